"""One hop against the ensemble, and Triton's response cache as the first tier, on digits and MiniLM.

Each example is built four ways into one repository (FP32, the same compute in every build) and served by one
local tritonserver: `<m>_hop` (one hop, no cache) against `<m>_ens` (serving.topology: ensemble, its compute step
the runner model in-process) at concurrency 1 and 16 on inputs never sent before; and the cache's hit against
its miss at concurrency 1, with tritonforge's own cache alone (`<m>_py`, memory) and with Triton's cache in front
of it (`<m>_tier`, serving.triton_cache). Rounds are interleaved (every point of a round, the order rotated each
round), every round shown, medians and per-round ratios summarised. A miss point that any cache answered (Triton's
statistics or tritonforge's /metrics) is voided and measured again with fresh inputs.

    python -m benchmarks.bench_topology [--rounds 3] [--work DIR] [--out perf_results/bench_topology.json]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from benchmarks import example_builds
from benchmarks.example_builds import example_spec
from tritonforge.cli.render import console
from tritonforge.perf.analyzer import MeasureSettings, PerfPoint, check_binary, measure
from tritonforge.perf.inputs import UniqueInputs, model_ranges, model_samples, select, write_input_json
from tritonforge.perf.sweep import ensemble_steps, server_counters
from tritonforge.perf.triton_stats import model_stats
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer

BASES = ("digits", "minilm")
BUILDS = {  # suffix -> serving overrides
    "hop": {"cache": {"kind": "none"}},
    "ens": {"cache": {"kind": "none"}, "topology": "ensemble"},
    "py": {"cache": {"kind": "memory"}},
    "tier": {"cache": {"kind": "memory"}, "triton_cache": {"enabled": True}},
}
UNIQUE = {"digits": 40_000, "minilm": 8_000}  # inputs per miss point: above what a point sends at the rates seen here


def _specs(work: Path) -> list[Path]:
    """Each example four ways (BUILDS), FP32 only."""
    return [example_spec(work, base, suffix, serving, variants=[]) for base in BASES for suffix, serving in BUILDS.items()]


def _cache_answers(admin, metrics_url: str, repo: Path, model: str, measured) -> tuple[PerfPoint, float]:
    """The point `measured()` gives, and how many of its requests a cache answered (Triton's or tritonforge's, in
    the model or any step of it)."""
    counted = [model, *ensemble_steps(Repository(repo), model)]
    before, py_before = model_stats(admin, model), server_counters(metrics_url, counted)
    point = measured()
    after, py_after = model_stats(admin, model), server_counters(metrics_url, counted)
    hits = (after - before).cache_hits + ((py_after.hits - py_before.hits) if py_before and py_after else 0.0)
    return point, hits


def run(repo: Path, rounds: int, scratch: Path) -> dict:
    import tritonclient.grpc as grpcclient

    check_binary()
    rows: dict[str, list[dict]] = {}
    with LocalTritonServer(repo) as server:
        admin = grpcclient.InferenceServerClient(server.grpc_url)
        settings = MeasureSettings(url=server.grpc_url, measurement_interval_ms=1500, max_trials=6, stability_pct=15)
        work = scratch / "inputs"
        work.mkdir(parents=True, exist_ok=True)
        points: list[tuple[str, str, int, str]] = []  # (row key, model, concurrency, inputs)
        for base in BASES:
            for c in (1, 16):
                for suffix in ("hop", "ens"):
                    points.append((f"{base} {suffix} c{c} miss", f"{base}_{suffix}", c, "unique"))
            for suffix in ("py", "tier"):
                for inputs in ("unique", "repeated"):
                    kind = "miss" if inputs == "unique" else "hit"
                    points.append((f"{base} {suffix} c1 {kind}", f"{base}_{suffix}", 1, inputs))
        try:
            for r in range(rounds):
                console.print(f"round {r + 1}/{rounds}")
                order = points[r % len(points) :] + points[: r % len(points)]
                for key, model, c, inputs in order:
                    row = _point(admin, server.metrics_url, repo, settings, work, model, c, inputs)
                    rows.setdefault(key, []).append(row)
                    console.print(
                        f"  {key:28s} {row['throughput']:8.1f}/s  p50 {row['p50_ms']:6.2f} ms  p95 {row['p95_ms']:6.2f} ms"
                        + (f"  (voided {row['voided']} with cache answers)" if row["voided"] else ""),
                        markup=False,
                    )
        finally:
            admin.close()
    return {"rounds": rounds, "rows": rows}


def _point(admin, metrics_url: str, repo: Path, settings: MeasureSettings, work: Path, model: str, c: int, inputs: str) -> dict:
    samples, ranges = model_samples(repo, model), model_ranges(repo, model)
    base = model.rsplit("_", 1)[0]
    voided = 0
    for _attempt in range(3):
        if inputs == "unique":
            data = UniqueInputs(samples, UNIQUE[base], work / f"{model}_{c}.json", ranges)
        else:
            data = write_input_json(select(samples, "repeated", 1), work / f"{model}_{c}_repeated.json")
        point, hits = _cache_answers(admin, metrics_url, repo, model, lambda d=data: measure(model, settings, 1, c, None, d))
        if inputs == "repeated" or hits == 0:
            break
        voided += 1  # a miss series some cache answered: measured again with fresh inputs
    return {
        "throughput": point.throughput,
        "p50_ms": point.p50_us / 1000,
        "p95_ms": point.p95_us / 1000,
        "cache_answers": hits,
        "voided": voided,
    }


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows]))


def render(out: dict) -> dict:
    rows = out["rows"]
    table = Table(title="per round: throughput /s, p50 ms, p95 ms (interleaved; every point on unique inputs unless 'hit')")
    table.add_column("point")
    for r in range(out["rounds"]):
        table.add_column(f"r{r + 1}")
    table.add_column("median /s, p50, p95")
    for key, series in rows.items():
        cells = [f"{s['throughput']:.0f}, {s['p50_ms']:.2f}, {s['p95_ms']:.2f}" for s in series]
        median = f"{_median(series, 'throughput'):.0f}, {_median(series, 'p50_ms'):.2f}, {_median(series, 'p95_ms'):.2f}"
        table.add_row(key, *cells, median)
    console.print(table)
    summary: dict[str, float] = {}
    ratios = Table(title="ratios, per round then median")
    for col in ("ratio", "per round", "median"):
        ratios.add_column(col)

    def ratio(name: str, a: str, b: str, field: str) -> None:
        per = [x[field] / y[field] for x, y in zip(rows[a], rows[b], strict=True)]
        summary[name] = float(np.median(per))
        ratios.add_row(name, ", ".join(f"{v:.2f}" for v in per), f"{summary[name]:.2f}")

    for base in BASES:
        for c in (1, 16):
            ratio(f"{base} ensemble / one hop, c{c} throughput", f"{base} ens c{c} miss", f"{base} hop c{c} miss", "throughput")
            ratio(f"{base} ensemble / one hop, c{c} p50", f"{base} ens c{c} miss", f"{base} hop c{c} miss", "p50_ms")
        ratio(f"{base} hit / miss p50, tritonforge's cache alone", f"{base} py c1 hit", f"{base} py c1 miss", "p50_ms")
        ratio(f"{base} hit / miss p50, Triton's cache in front", f"{base} tier c1 hit", f"{base} tier c1 miss", "p50_ms")
    console.print(ratios)
    return summary


def main() -> int:
    return example_builds.main(__doc__ or "", "bench_topology", _specs, run, render)


if __name__ == "__main__":
    raise SystemExit(main())
