"""INT8 on the MiniLM encoder, with and without the graph-optimization stage: FP32 as exported, FP32 with its
attention fused, the INT8 search's winner on the exported graph (what a build published before the stage) and
on the fused graph (QAttention), plus the recipe most users apply (optimum's avx512_vnni preset: dynamic, per
channel, its operator list). Every variant is gated by the example's gate (min cosine 0.99 on held-out sentences,
batched, one at a time and as served), then timed side by side in the serving environment's ONNX Runtime (the one
the local server and the in-process rungs run): rounds interleaved, the order rotated each round, every round
shown, the median per-round speed-up against FP32.

    python -m benchmarks.bench_int8 [--rounds 5] [--work DIR] [--out perf_results/bench_int8.json]

Each graph is built into its own scratch repository with the example's accuracy-control search (the same starts
and budget), so the two INT8 winners differ only in the graph they quantize.
"""

from __future__ import annotations

import argparse
import json
import platform
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
from tritonforge.builder.serving_ort import ServingOrt
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
BUILDS = {  # name -> (the search's graph, the spec's variants)
    "exported": ("exported", [PRESET]),
    "fused": ("fused", [{"kind": "onnx_fp32_fused"}]),
}


def _spec(dest: Path, graph: str, variants: list[dict]) -> Path:
    data = yaml.safe_load((MINILM / "spec.yaml").read_text())
    search = {**data["int8_search"], "graph": graph}
    data.update(variants=variants, int8_search=search, timing={"batch_sizes": BATCHES})
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("minilm_model.py", "minilm_data.py", "sentences.txt"):
        shutil.copy(MINILM / name, dest / name)
    (dest / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dest / "spec.yaml"


def _cosines(variant: dict) -> dict:
    """The gate's worst cosine (the failing or worst form), and each as-served form's, from the variant's notes."""
    outputs = (variant.get("comparison") or {}).get("outputs") or {}
    served = [n for n in variant.get("notes", []) if n.startswith("gated as served")]
    return {
        "min_cosine": outputs.get("embedding", {}).get("min_cosine"),
        "as_served": [float(n.rsplit(" ", 1)[1]) for n in served],
    }


def _build(work: Path, name: str) -> dict:
    graph, variants = BUILDS[name]
    spec = _spec(work / name, graph, variants)
    start = time.perf_counter()
    outcome = build(spec, work / name / "repo")
    seconds = time.perf_counter() - start
    repo = Repository(work / name / "repo")
    # an unchanged build in a reused --work does nothing: its report is the one published before
    report = (outcome.report or repo.report(outcome.spec.name)).to_dict()
    s = report["int8_search"]
    by_id = {v["id"]: v for v in report["variants"]}
    rows = {}
    for label, vid in (
        ("fp32", "onnx_fp32"),
        (f"int8 search, {name} graph", s["winner"]),
        ("fp32 fused", "onnx_fp32_fused"),
        ("optimum avx512_vnni preset", PRESET["id"]),
    ):
        v = by_id.get(vid) if vid else None
        if v is None:
            continue
        rows[label] = {
            "id": v["id"],
            "status": v["status"],
            "reason": v["reason"],
            "nodes_in_float": len(v["options"].get("exclude_nodes", [])),
            "file": str(repo.file(v["published_as"])) if v.get("published_as") else None,
            **_cosines(v),
        }
    return {
        "build_s": round(seconds, 1),
        "evaluations": s["evaluations"],
        "tried": s["tried"],
        "winner": s["winner"],
        "best_failing": s["best"],
        "path": s["path"],
        "variants": rows,
    }


def _side_by_side(files: dict[str, str], rounds: int, ort: ServingOrt) -> list[dict]:
    spec = load_spec(MINILM / "spec.yaml")
    validation = load_dataset(spec, spec.validation.data, "validation.data")
    inputs = {b: timing_input(validation, b) for b in BATCHES}
    names = [t.name for t in spec.inputs]
    timers = {
        k: open_runtime("onnxruntime", Path(f), names, ["embedding"], threads=spec.serving.intra_op_threads, ort=ort).timer
        for k, f in files.items()
    }
    settings = TimingSpec(batch_sizes=BATCHES, max_windows=6)
    per_round = []
    for r in range(rounds):
        order = list(timers)[r % len(timers) :] + list(timers)[: r % len(timers)]
        stats = measure({k: timers[k] for k in order}, inputs, settings)
        per_round.append({k: {str(b): s.p50_ms for b, s in v.items()} for k, v in stats.items()})
    return per_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="scratch directory, kept (default: a temporary one); a reused one re-times without rebuilding",
    )
    parser.add_argument("--out", type=Path, default=Path("perf_results/bench_int8.json"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_int8."))
    ort = ServingOrt()
    try:
        builds = {name: _build(work, name) for name in BUILDS}
        variants = {**builds["exported"]["variants"], **builds["fused"]["variants"]}
        files = {k: v["file"] for k, v in variants.items() if v["file"] and v["status"] == "passed"}
        files["fp32"] = builds["exported"]["variants"]["fp32"]["file"]
        files = {"fp32": files.pop("fp32"), **files}
        rounds = _side_by_side(files, args.rounds, ort)
        runtime = ort.label
    finally:
        ort.close()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    gate = Table(title="MiniLM variants (gate: min cosine 0.99 on held-out sentences, batched, alone and as served)")
    for col in ("variant", "id", "gate", "nodes in float", "min cosine", "as served", "reason"):
        gate.add_column(col)
    for k, v in variants.items():
        served = ", ".join(f"{c:.5f}" for c in v["as_served"]) or "-"
        cosine = f"{v['min_cosine']:.6f}" if v["min_cosine"] is not None else "-"
        gate.add_row(k, v["id"], v["status"], str(v["nodes_in_float"]), cosine, served, v["reason"][:60])
    console.print(gate)
    for name, b in builds.items():
        best = b["best_failing"] or {}
        found = f"winner {b['winner']}" if b["winner"] else f"none passes (closest {best.get('id')}: {best.get('reason')})"
        steps = ", ".join(f"{st['id']} {'pass' if st['passed'] else 'fail'}" for st in (b["path"] or {}).get("steps", []))
        console.print(f"INT8 search on the {name} graph ({b['build_s']:.0f} s build): {found}; steps: {steps}")

    speed = Table(title=f"p50 ms per round and median per-round speed-up against FP32 ({runtime}, interleaved)")
    speed.add_column("variant")
    speed.add_column("batch")
    for i in range(len(rounds)):
        speed.add_column(f"r{i + 1}")
    speed.add_column("speed-up")
    summary: dict[str, dict[str, float]] = {}
    for k in files:
        for b in map(str, BATCHES):
            ratios = [r["fp32"][b] / r[k][b] for r in rounds]
            summary.setdefault(k, {})[b] = round(float(np.median(ratios)), 3)
            speed.add_row(k, b, *(f"{r[k][b]:.2f}" for r in rounds), f"{summary[k][b]:.2f}x")
    console.print(speed)
    console.print(f"CPU: {platform.processor() or platform.machine()}, {_cpu_model()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"builds": builds, "rounds": rounds, "speedup": summary, "runtime": runtime}, indent=2))
    console.print(f"wrote {args.out}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                vnni = "VNNI" if "vnni" in flags else "no VNNI"
                amx = ", AMX" if "amx_int8" in flags else ""
                return f"{line.split(':', 1)[1].strip()} ({vnni}{amx})"
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
