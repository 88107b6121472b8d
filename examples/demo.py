"""`make demo`: train -> build (variants, gate, timing) -> serve on the real local Triton -> call over gRPC.

    python examples/demo.py [--repo model_repository] [--skip-minilm]

Digits: served accuracy next to in-process PyTorch accuracy. MiniLM: a text-embedding service (one public model:
cache, tokenizer, router, in-process ONNX Runtime), similarity of sentence pairs, and a cache hit against a miss.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from tritonforge.builder.pipeline import build
from tritonforge.builder.sources import load_source
from tritonforge.cli.render import RichReporter, console, model_states_table, repository_check_lines, variants_table
from tritonforge.client import Client
from tritonforge.server.process import LocalTritonServer
from tritonforge.server.summary import summarize
from tritonforge.serving.metric_names import METRICS_LAG_S
from tritonforge.spec import load_spec

DIGITS = ROOT / "examples" / "digits"
MINILM = ROOT / "examples" / "minilm"
PAIRS = [
    ("A man is playing a guitar.", "Someone is strumming a musical instrument."),
    ("The cat sleeps on the warm windowsill.", "A kitten naps in the sun by the window."),
    ("Interest rates rose again this year.", "The central bank increased borrowing costs."),
    ("A man is playing a guitar.", "Interest rates rose again this year."),
    ("The cat sleeps on the warm windowsill.", "The printer is out of toner."),
]


def digits_demo(server: LocalTritonServer) -> tuple[int, float, float, float]:
    """Served vs in-process accuracy and prediction agreement on the held-out digits."""
    spec = load_spec(DIGITS / "spec.yaml")
    data = np.load(DIGITS / "artifacts" / "validation.npz")
    images, labels = data["image"], data["label"]
    torch_pred = load_source(spec).run({"image": images})["logits"].argmax(1)
    # One request per 8 images, 8 in flight, so Triton's dynamic batcher has work to merge.
    with Client(server.grpc_url, timeout=30) as client:
        client.wait_until_ready("digits", timeout=60)
        chunks = [images[i : i + 8] for i in range(0, len(images), 8)]
        with ThreadPoolExecutor(8) as pool:
            served = list(pool.map(lambda x: client.infer("digits", {"image": x})["logits"], chunks))
    served_pred = np.concatenate(served).argmax(1)
    return (
        len(labels),
        float((torch_pred == labels).mean()),
        float((served_pred == labels).mean()),
        float((torch_pred == served_pred).mean()),
    )


def _router_counts(server: LocalTritonServer, model: str) -> dict[str, int]:
    time.sleep(METRICS_LAG_S)  # the public model sends its counts off the request path
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("tritonforge_router_requests_total") and f'model="{model}"' in line:
            variant = line.split('variant="', 1)[1].split('"', 1)[0]
            out[variant] = int(float(line.rsplit(" ", 1)[1]))
    return out


def minilm_demo(server: LocalTritonServer) -> None:
    """Similarity of sentence pairs through the text-embedding service; a cache miss against a hit."""
    with Client(server.grpc_url, timeout=60) as client:
        client.wait_until_ready("minilm", timeout=120)

        def embed(texts: list[str]) -> np.ndarray:
            return client.infer("minilm", {"text": np.array([[t] for t in texts], dtype=object)})["embedding"]

        console.print("cosine similarity of sentence pairs (served embeddings):")
        for a, b in PAIRS:
            ea, eb = embed([a, b])
            console.print(f"  {float(ea @ eb):+.3f}  {a!r} ~ {b!r}")
        text = [f"A fresh sentence sent at {time.time():.6f}."]
        t0 = time.perf_counter()
        first = embed(text)
        miss_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        second = embed(text)
        hit_ms = (time.perf_counter() - t0) * 1000
    console.print(
        f"same text twice: miss {miss_ms:.1f} ms, hit {hit_ms:.1f} ms, identical bytes: {first.tobytes() == second.tobytes()}"
    )
    console.print(f"router: requests answered per variant: {_router_counts(server, 'minilm')}")


def _topology_line(report) -> str:
    """Which topology the build serves and why (the README's "One hop or an ensemble" says when to choose which)."""
    if report.serving.topology == "ensemble":
        return f"served as an ensemble: front step -> {report.serving.compute_step}"
    return (
        "served in one hop (serving.topology: one_hop, the default): checks, tokenizer, cache and the fallback "
        "chain in one Python-backend model; `serving.topology: ensemble` serves it as a Triton ensemble"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--skip-minilm", action="store_true", help="only the digits example")
    args = parser.parse_args()

    console.rule("[bold]1. train the digits classifier (scikit-learn load_digits, fixed seed)")
    subprocess.run([sys.executable, str(DIGITS / "train.py")], check=True)  # a program of its own, as a user runs it

    console.rule("[bold]2. build: PyTorch -> verified ONNX -> precision variants, gated and timed -> Triton repository")
    specs = [DIGITS / "spec.yaml"] + ([] if args.skip_minilm else [MINILM / "spec.yaml"])
    from tritonforge.builder.serving_check import ServingCheck
    from tritonforge.repository.build_report import read_report

    with ServingCheck() as check:  # one local server proves every spec's staged repository, as `tritonforge build`
        for spec in specs:
            outcome = build(spec, args.repo, reporter=RichReporter(f"{spec.parent.name}: "), check=check)
            report = read_report(args.repo, outcome.spec.name)
            console.print(variants_table(report))
            for line in repository_check_lines(report):
                console.print(f"  {line}", markup=False)
            if outcome.noop:
                console.print(f"{outcome.spec.name}: unchanged since the last build, no work done")
            console.print(f"{outcome.spec.name}: {_topology_line(report)}")

    console.rule("[bold]3. serve on the real local tritonserver and call it over gRPC")
    with LocalTritonServer(args.repo, load_models=[load_spec(s).name for s in specs]) as server:
        states = server.model_states()
        console.print(model_states_table(states))
        console.print(summarize(args.repo, states).line(), markup=False, soft_wrap=True)
        n, torch_acc, served_acc, agree = digits_demo(server)
        if not args.skip_minilm:
            console.rule("[bold]MiniLM text-embedding service")
            minilm_demo(server)
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
