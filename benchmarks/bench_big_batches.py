"""What closes the gap between the served compute path and in-process ONNX Runtime at the concurrency that forms
big batches: MiniLM's runner model (`minilm_ort`, the compute path alone) at concurrency 16, 32 and 64 under
instance counts, intra-op threads and queue delays, each against the same ONNX file run in-process at its best
batch size (the serving environment's ONNX Runtime, same session settings). Rounds interleaved, every round shown.

    python -m benchmarks.bench_big_batches [--repo model_repository] [--rounds 2] [--out perf_results/bench_big_batches.json]

Needs `make demo` first (the MiniLM build). Settings are loaded into the running server with Triton's model
control (a config override), so no rebuild is needed; the repository's files are not changed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from rich.table import Table

from benchmarks.bench_serving import BENCH, MODEL, Texts, serving_python
from tritonforge.cli.render import console
from tritonforge.perf.analyzer import MeasureSettings, check_binary, measure
from tritonforge.repository.config import read_config
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer

# (label, instances, intra-op threads, max queue delay us)
CONFIGS = [
    ("1 instance, runtime's threads, no delay (the build's)", 1, 0, 0),
    ("1 instance, runtime's threads, 2 ms delay", 1, 0, 2000),
    ("2 instances, 1 thread, no delay", 2, 1, 0),
    ("2 instances, 1 thread, 2 ms delay", 2, 1, 2000),
]
CONCURRENCY = (16, 32, 64)


def _load(admin, repo: Path, runner: str, instances: int, threads: int, delay: int) -> None:
    cfg = read_config(repo / runner / "config.pbtxt")
    cfg.instance_group[0].count = instances
    cfg.dynamic_batching.max_queue_delay_microseconds = delay
    settings = json.loads(cfg.parameters["tritonforge"].string_value)
    settings["intra_op_threads"] = threads
    cfg.parameters["tritonforge"].string_value = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    admin.load_model(runner, config=json_format.MessageToJson(cfg))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repository"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("perf_results/bench_big_batches.json"))
    args = parser.parse_args()
    repo = args.repo.absolute()
    check_binary()
    repository = Repository(repo)
    runner = repository.runner(MODEL)
    assert runner is not None
    texts = Texts(repo)
    settings = MeasureSettings(url="", measurement_interval_ms=2000, max_trials=6, stability_pct=15)
    rows: dict[str, list[float]] = {}
    ceilings: list[dict[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="tf-bigbatch-") as tmp_name, LocalTritonServer(repo, load_models=[runner]) as server:
        tmp = Path(tmp_name)
        admin = grpcclient.InferenceServerClient(server.grpc_url)
        npz = texts.token_npz(texts.texts(64), tmp / "tokens.npz")
        k = 0
        try:
            for r in range(args.rounds):
                console.rule(f"round {r + 1} of {args.rounds}")
                order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]
                for label, instances, threads, delay in order:
                    _load(admin, repo, runner, instances, threads, delay)
                    for c in CONCURRENCY:
                        k += 1
                        data = texts.token_file(texts.texts(4000), tmp / f"t{k}.json")
                        point = measure(runner, replace(settings, url=server.grpc_url), 1, c, None, data)
                        rows.setdefault(f"{label} | c{c}", []).append(point.throughput)
                        console.print(f"  {label}, c{c}: {point.throughput:.1f}/s", markup=False)
                proc = subprocess.run(
                    [
                        serving_python(),
                        str(BENCH / "in_process_ort.py"),
                        str(repository.file(runner)),
                        str(npz),
                        "--threads",
                        "2",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                ceiling = {int(b): v for b, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
                ceilings.append(ceiling)
                console.print(f"  in-process ONNX Runtime, runtime's threads: {ceiling}", markup=False)
        finally:
            admin.load_model(runner)  # back to the repository's own config
            admin.close()
    best = [max(c.values()) for c in ceilings]
    table = Table(title="served compute path / in-process ONNX Runtime at its best batch (per round)")
    for col in ("settings | load", "infer/s per round", "served / in-process best"):
        table.add_column(col)
    summary = {}
    for key, values in rows.items():
        ratios = [v / b for v, b in zip(values, best, strict=True)]
        summary[key] = float(np.median(ratios))
        table.add_row(key, ", ".join(f"{v:.0f}" for v in values), ", ".join(f"{x:.2f}" for x in ratios))
    console.print(table)
    console.print(f"in-process best per round: {', '.join(f'{b:.0f}/s' for b in best)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "in_process": ceilings, "summary": summary}, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
