"""Train the digits classifier in seconds (fixed seed) and write its weights and data splits.

    python examples/digits/train.py [--force]

Writes artifacts/: digits_mlp.pt (state_dict), validation.npz (held-out images + labels, used to verify and
gate every variant, never for calibration), calibration.npz (from the training split, for INT8 calibration).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
SEED = 0


def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train / held-out split of load_digits, pixels scaled to [0, 1] as float32."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    return {"train": (x_train, y_train.astype(np.int64)), "validation": (x_val, y_val.astype(np.int64))}


def train(epochs: int = 300) -> tuple[torch.nn.Module, float]:
    sys.path.insert(0, str(HERE))
    from digits_model import build_model

    torch.manual_seed(SEED)
    data = splits()
    x, y = (torch.from_numpy(a) for a in data["train"])
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 128):
            idx = perm[start : start + 128]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    xv, yv = (torch.from_numpy(a) for a in data["validation"])
    with torch.no_grad():
        acc = float((model(xv).argmax(1) == yv).float().mean())
    return model, acc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if the artifacts exist")
    args = parser.parse_args(argv)
    outputs = [ARTIFACTS / n for n in ("digits_mlp.pt", "validation.npz", "calibration.npz")]
    if all(p.exists() for p in outputs) and not args.force:
        print(f"digits: artifacts present in {ARTIFACTS} (use --force to retrain)")
        return 0
    ARTIFACTS.mkdir(exist_ok=True)
    model, acc = train()
    torch.save(model.state_dict(), ARTIFACTS / "digits_mlp.pt")
    data = splits()
    np.savez(ARTIFACTS / "validation.npz", image=data["validation"][0], label=data["validation"][1])
    rng = np.random.default_rng(SEED)
    calib = rng.choice(len(data["train"][0]), size=256, replace=False)
    np.savez(ARTIFACTS / "calibration.npz", image=data["train"][0][calib])
    print(f"digits: trained, held-out accuracy {acc:.4f} on {len(data['validation'][0])} images -> {ARTIFACTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
