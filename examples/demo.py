"""`make demo`: train -> build -> serve on the real local Triton -> call over gRPC -> compare with in-process PyTorch.

    python examples/demo.py [--repo model_repository]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.pipeline import build  # noqa: E402
from builder.render import RichReporter, console, model_states_table  # noqa: E402
from builder.sources import load_source  # noqa: E402
from builder.spec import load_spec  # noqa: E402
from builder.triton_server import LocalTritonServer  # noqa: E402
from client import Client  # noqa: E402

DIGITS = ROOT / "examples" / "digits"


def digits_demo(server: LocalTritonServer) -> tuple[int, float, float, float]:
    """Served vs in-process accuracy and prediction agreement on the held-out digits."""
    spec = load_spec(DIGITS / "spec.yaml")
    data = np.load(DIGITS / "artifacts" / "validation.npz")
    images, labels = data["image"], data["label"]
    # In-process PyTorch, straight from the spec's source model.
    torch_logits = load_source(spec).run({"image": images})["logits"]
    torch_pred = torch_logits.argmax(1)
    # Served: one request per 8 images, 8 in flight, so Triton's dynamic batcher has work to merge.
    with Client(server.grpc_url, timeout=30) as client:
        client.wait_until_ready("digits", timeout=60)
        chunks = [images[i:i + 8] for i in range(0, len(images), 8)]
        with ThreadPoolExecutor(8) as pool:
            served = list(pool.map(lambda x: client.infer("digits", {"image": x})["logits"], chunks))
    served_pred = np.concatenate(served).argmax(1)
    return (len(labels), float((torch_pred == labels).mean()), float((served_pred == labels).mean()),
            float((torch_pred == served_pred).mean()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    args = parser.parse_args()

    console.rule("[bold]1. train the digits classifier (scikit-learn load_digits, fixed seed)")
    subprocess.run([sys.executable, str(DIGITS / "train.py")], check=True)

    console.rule("[bold]2. build: PyTorch -> verified ONNX -> Triton model repository")
    outcome = build(DIGITS / "spec.yaml", args.repo, reporter=RichReporter("digits: "))
    console.print(f"models: {', '.join(outcome.manifest.models)}" + ("  (unchanged, no work done)" if outcome.noop else ""))

    console.rule("[bold]3. serve on the real local tritonserver and call it over gRPC")
    with LocalTritonServer(args.repo) as server:
        console.print(model_states_table(server.model_states()))
        n, torch_acc, served_acc, agree = digits_demo(server)
    console.rule("[bold]result")
    console.print(f"held-out digits: {n} images")
    console.print(f"  in-process PyTorch accuracy : {torch_acc:.4f}")
    console.print(f"  served (Triton gRPC) accuracy: {served_acc:.4f}")
    console.print(f"  same predictions             : {agree:.2%}")
    ok = agree >= 0.995
    console.print("[green]served model matches the trained model[/]" if ok else "[red]served predictions differ[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
