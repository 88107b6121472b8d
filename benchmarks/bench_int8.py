"""INT8 on the MiniLM encoder: the accuracy-control search against the grid it replaced, and against the recipe
most users apply (optimum's avx512_vnni preset: dynamic, per channel, its operator list), all gated by the
example's gate (min cosine 0.99 on held-out sentences), then timed side by side in one run: rounds interleaved
(FP32, grid winner, search winner, preset; again ...), every round shown, the median per-round speed-up.

    python -m benchmarks.bench_int8 [--rounds 5] [--work DIR] [--out perf_results/bench_int8.json]

The grid is the example's former search (methods dynamic, minmax x per-channel off/on x 0/2/4/8 most sensitive
nodes in float: 16 points). Each strategy builds into its own scratch repository; only the variants' files are
timed here, with the build's own timing code and the server's ONNX Runtime session settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from rich.table import Table

from tritonforge.builder.data import load_dataset
from tritonforge.builder.pipeline import build
from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.timing import measure, timing_input
from tritonforge.cli.render import console
from tritonforge.repository.reader import Repository
from tritonforge.spec import TimingSpec, load_spec

MINILM = Path(__file__).resolve().parents[1] / "examples" / "minilm"
BATCHES = [1, 32]
# optimum.onnxruntime.AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True): QInt8 weights,
# QUInt8 activations, no reduce_range, and optimum's default operator list for dynamic quantization
PRESET = {
    "kind": "onnx_int8_dynamic",
    "id": "optimum_avx512_vnni",
    "per_channel": True,
    "op_types": ["Conv", "MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"],
}
GRID = {
    "enabled": True,
    "strategy": "grid",
    "methods": ["dynamic", "minmax"],
    "per_channel": [False, True],
    "exclude_top": [0, 2, 4, 8],
}
SEARCH = {"enabled": True, "strategy": "accuracy_control"}


def _spec(dest: Path, search: dict, variants: list[dict]) -> Path:
    data = yaml.safe_load((MINILM / "spec.yaml").read_text())
    data.update(variants=variants, int8_search=search, timing={"batch_sizes": BATCHES})
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("minilm_model.py", "minilm_data.py", "sentences.txt"):
        shutil.copy(MINILM / name, dest / name)
    (dest / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dest / "spec.yaml"


def _strategy(work: Path, name: str, search: dict, variants: list[dict]) -> dict:
    spec = _spec(work / name, search, variants)
    start = time.perf_counter()
    report = build(spec, work / name / "repo").report.to_dict()
    seconds = time.perf_counter() - start
    s = report["int8_search"]
    by_id = {v["id"]: v for v in report["variants"]}
    winner = by_id.get(s["winner"]) if s["winner"] else None
    row = {
        "strategy": name,
        "build_s": round(seconds, 1),
        "evaluations": s["evaluations"],
        "tried": s["tried"],
        "winner": s["winner"],
        "path": s["path"],
        "best_failing": s["best"],
        "nodes_in_float": len(winner["options"]["exclude_nodes"]) if winner else None,
        "min_cosine": _cosine(winner) if winner else None,
        "file": str(Repository(work / name / "repo").file(winner["published_as"])) if winner else None,
        "fp32": str(Repository(work / name / "repo").file("minilm_onnx_fp32")),
        "batched_only": [st["id"] for st in (s["path"] or {}).get("steps", []) if st.get("batched_only")],
    }
    preset = by_id.get(PRESET["id"])
    if preset:
        row["preset"] = {
            "status": preset["status"],
            "reason": preset["reason"],
            "min_cosine": _cosine(preset),
            "file": str(Repository(work / name / "repo").file(preset["published_as"])) if preset.get("published_as") else None,
        }
    return row


def _cosine(variant: dict) -> float | None:
    outputs = (variant.get("comparison") or {}).get("outputs") or {}
    return outputs.get("embedding", {}).get("min_cosine")


def _side_by_side(files: dict[str, str], rounds: int) -> dict:
    spec = load_spec(MINILM / "spec.yaml")
    validation = load_dataset(spec, spec.validation.data, "validation.data")
    inputs = {b: timing_input(validation, b) for b in BATCHES}
    names = [t.name for t in spec.inputs]
    runners = {
        k: open_runtime("onnxruntime", Path(f), names, ["embedding"], threads=spec.serving.intra_op_threads).run
        for k, f in files.items()
    }
    settings = TimingSpec(batch_sizes=BATCHES, max_windows=6)
    per_round = []
    for r in range(rounds):
        order = list(runners)[r % len(runners) :] + list(runners)[: r % len(runners)]
        stats = measure({k: runners[k] for k in order}, inputs, settings)
        per_round.append({k: {str(b): s.p50_ms for b, s in v.items()} for k, v in stats.items()})
    return {"rounds": per_round}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("perf_results/bench_int8.json"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_int8."))
    try:
        grid = _strategy(work, "grid", GRID, [PRESET])
        search = _strategy(work, "accuracy_control", SEARCH, [])
        files = {"fp32": grid["fp32"]}
        if grid["file"]:
            files["grid"] = grid["file"]
        if search["file"]:
            files["accuracy_control"] = search["file"]
        if grid.get("preset", {}).get("file"):
            files["optimum_avx512_vnni"] = grid["preset"]["file"]
        timing = _side_by_side(files, args.rounds)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    table = Table(title="INT8 search on MiniLM (gate: min cosine 0.99, held-out sentences)")
    for col in ("strategy", "evaluations", "build s", "winner", "nodes in float", "min cosine"):
        table.add_column(col)
    for row in (grid, search):
        table.add_row(
            row["strategy"],
            str(row["evaluations"]),
            f"{row['build_s']:.0f}",
            str(row["winner"]),
            str(row["nodes_in_float"]),
            f"{row['min_cosine']:.4f}" if row["min_cosine"] else "-",
        )
    p = grid.get("preset") or {}
    table.add_row(
        "optimum avx512_vnni preset",
        "1",
        "-",
        p.get("status", "-"),
        "0",
        f"{p['min_cosine']:.4f}" if p.get("min_cosine") else "-",
    )
    console.print(table)

    rounds = timing["rounds"]
    speed = Table(title="p50 ms per round, and median per-round speed-up against FP32 (side by side, interleaved)")
    speed.add_column("variant")
    speed.add_column("batch")
    for i in range(len(rounds)):
        speed.add_column(f"r{i + 1}")
    speed.add_column("speed-up")
    summary = {}
    for k in files:
        for b in map(str, BATCHES):
            ratios = [r["fp32"][b] / r[k][b] for r in rounds]
            summary.setdefault(k, {})[b] = round(float(np.median(ratios)), 3)
            speed.add_row(k, b, *(f"{r[k][b]:.2f}" for r in rounds), f"{summary[k][b]:.2f}x")
    console.print(speed)
    if search["batched_only"] or grid["batched_only"]:
        console.print(f"passed batched, failed one sample at a time: {search['batched_only'] + grid['batched_only']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"grid": grid, "accuracy_control": search, "timing": timing, "speedup": summary}, indent=2))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
