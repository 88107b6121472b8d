"""Train a small gradient-boosted tree classifier in seconds (fixed seed) and write it with its data splits.

    python examples/sklearn_gbm/train.py [--force]

Writes artifacts/: gbm.joblib (the fitted GradientBoostingClassifier, 3 classes on 10 features of a
make_classification set), validation.npz (held-out features + labels, used to verify and gate every variant,
never for calibration), calibration.npz (from the training split, for INT8 calibration).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
SEED = 0
FILES = ("gbm.joblib", "validation.npz", "calibration.npz")


def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train / held-out split of a 3-class make_classification set, features as float32."""
    x, y = make_classification(
        n_samples=2000, n_features=10, n_informative=6, n_redundant=2, n_classes=3, class_sep=1.2, random_state=SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x.astype(np.float32), y.astype(np.int64), test_size=0.3, random_state=SEED, stratify=y
    )
    return {"train": (x_train, y_train), "validation": (x_val, y_val)}


def train() -> tuple[GradientBoostingClassifier, float]:
    data = splits()
    model = GradientBoostingClassifier(n_estimators=60, max_depth=3, learning_rate=0.2, random_state=SEED)
    model.fit(*data["train"])
    return model, float(model.score(*data["validation"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if the artifacts exist")
    args = parser.parse_args(argv)
    if all((ARTIFACTS / n).exists() for n in FILES) and not args.force:
        print(f"sklearn_gbm: artifacts present in {ARTIFACTS} (use --force to retrain)")
        return 0
    ARTIFACTS.mkdir(exist_ok=True)
    model, acc = train()
    joblib.dump(model, ARTIFACTS / "gbm.joblib")
    data = splits()
    np.savez(ARTIFACTS / "validation.npz", input=data["validation"][0], target=data["validation"][1])
    rng = np.random.default_rng(SEED)
    calib = rng.choice(len(data["train"][0]), size=256, replace=False)
    np.savez(ARTIFACTS / "calibration.npz", input=data["train"][0][calib])
    print(f"sklearn_gbm: trained, held-out accuracy {acc:.4f} on {len(data['validation'][0])} samples -> {ARTIFACTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
