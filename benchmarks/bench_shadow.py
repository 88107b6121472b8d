"""What the accuracy shadow costs the answers: serving.shadow at 0, 1% and 10% on digits and MiniLM.

Each example is built three times into one repository, the same in every build but `serving.shadow.fraction`:
the in-process rung serves the dynamic INT8 variant (router.cpu_variant), so the shadow has a variant to compare
with FP32, and no response cache answers. One local tritonserver serves all six; perf_analyzer measures each
at concurrency 1 and 16 on the build's held-out samples. Rounds are interleaved (every point of a round, the
order rotated each round), every round shown; the summary gives each fraction's throughput, p50 and p95 against
fraction 0, per round and as the median. Each point also counts the samples the shadow compared and dropped
during it (/metrics), and the run ends by checking that no variant was demoted (the traffic is in distribution:
a demotion would mean the 1% and 10% points measured FP32, not INT8 plus its shadow).

MiniLM's gate is min cosine 0.98 here, not the example's 0.99: the plain dynamic INT8 variant (no search) is
what is shadowed, and this measures cost, not accuracy.

    python -m benchmarks.bench_shadow [--rounds 3] [--work DIR] [--out perf_results/bench_shadow.json]
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
from rich.table import Table

from benchmarks import example_builds
from benchmarks.example_builds import example_spec
from tritonforge.cli.render import console
from tritonforge.perf.analyzer import MeasureSettings, check_binary, measure
from tritonforge.perf.inputs import model_samples, select, write_input_json
from tritonforge.perf.sweep import server_counters
from tritonforge.server.process import LocalTritonServer
from tritonforge.serving.metric_names import ROUTER_RUNG_DEMOTED

BASES = ("digits", "minilm")
FRACTIONS = {"s0": 0.0, "s1": 0.01, "s10": 0.1}  # build suffix -> serving.shadow.fraction
CONCURRENCY = (1, 16)
GATES = {"minilm": {"min_cosine": 0.98}}


def _specs(work: Path) -> list[Path]:
    """Each example three times, only serving.shadow.fraction differing: the dynamic INT8 variant serves in-process."""
    return [
        example_spec(
            work,
            base,
            suffix,
            {
                "cache": {"kind": "none"},
                "router": {"cpu_variant": "onnx_int8_dynamic"},
                "shadow": {"fraction": fraction, "window": 1000, "min_samples": 100},
            },
            variants=[{"kind": "onnx_int8_dynamic", "per_channel": True}],
            **({"gate": GATES[base]} if base in GATES else {}),
        )
        for base in BASES
        for suffix, fraction in FRACTIONS.items()
    ]


def _demoted(metrics_url: str) -> list[str]:
    """The lines of the demotion gauge that read 1."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return [line for line in text.splitlines() if line.startswith(ROUTER_RUNG_DEMOTED + "{") and not line.endswith(" 0")]


def run(repo: Path, rounds: int, work: Path) -> dict:
    check_binary()
    rows: dict[str, list[dict]] = {}
    points = [(base, suffix, c) for base in BASES for c in CONCURRENCY for suffix in FRACTIONS]
    with LocalTritonServer(repo) as server:
        settings = MeasureSettings(url=server.grpc_url, measurement_interval_ms=2000, max_trials=6, stability_pct=15)
        data = {
            f"{base}_{suffix}": write_input_json(
                select(model_samples(repo, f"{base}_{suffix}"), "validation", 512), work / f"{base}_{suffix}.json"
            )
            for base in BASES
            for suffix in FRACTIONS
        }
        for r in range(rounds):
            console.print(f"round {r + 1}/{rounds}")
            for base, suffix, c in points[r % len(points) :] + points[: r % len(points)]:
                model = f"{base}_{suffix}"
                before = server_counters(server.metrics_url, [model])
                point = measure(model, settings, 1, c, None, data[model])
                after = server_counters(server.metrics_url, [model])
                counted = after.since(before) if before and after else None
                row = {
                    "throughput": point.throughput,
                    "p50_ms": point.p50_us / 1000,
                    "p95_ms": point.p95_us / 1000,
                    "compared": counted.shadow_compared if counted else None,
                    "dropped": counted.shadow_dropped if counted else None,
                }
                rows.setdefault(f"{base} {FRACTIONS[suffix]:.0%} c{c}", []).append(row)
                console.print(
                    f"  {model:10s} c{c:<3d} {row['throughput']:8.1f}/s  p50 {row['p50_ms']:6.2f} ms  "
                    f"p95 {row['p95_ms']:6.2f} ms  shadow compared {row['compared']:.0f}, dropped {row['dropped']:.0f}",
                    markup=False,
                )
        demoted = _demoted(server.metrics_url)
    return {"rounds": rounds, "rows": rows, "demoted": demoted}


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows]))


def render(out: dict) -> dict:
    rows = out["rows"]
    table = Table(title="per round: throughput /s, p50 ms, p95 ms [shadow compared/dropped] (interleaved; held-out samples)")
    table.add_column("point")
    for r in range(out["rounds"]):
        table.add_column(f"r{r + 1}")
    table.add_column("median /s, p50, p95")
    for key, series in rows.items():
        cells = [
            f"{s['throughput']:.0f}, {s['p50_ms']:.2f}, {s['p95_ms']:.2f} [{s['compared']:.0f}/{s['dropped']:.0f}]"
            for s in series
        ]
        median = f"{_median(series, 'throughput'):.0f}, {_median(series, 'p50_ms'):.2f}, {_median(series, 'p95_ms'):.2f}"
        table.add_row(key, *cells, median)
    console.print(table)
    summary: dict[str, float] = {}
    ratios = Table(title="shadowed / not shadowed, per round then median")
    for col in ("ratio", "per round", "median"):
        ratios.add_column(col)
    for base in BASES:
        for c in CONCURRENCY:
            for fraction in (0.01, 0.1):
                for field, what in (("throughput", "throughput"), ("p50_ms", "p50"), ("p95_ms", "p95")):
                    a, b = rows[f"{base} {fraction:.0%} c{c}"], rows[f"{base} 0% c{c}"]
                    per = [x[field] / y[field] for x, y in zip(a, b, strict=True)]
                    name = f"{base} c{c} shadow {fraction:.0%} / 0%, {what}"
                    summary[name] = float(np.median(per))
                    ratios.add_row(name, ", ".join(f"{v:.2f}" for v in per), f"{summary[name]:.2f}")
    console.print(ratios)
    console.print(
        "no variant demoted during the run"
        if not out["demoted"]
        else f"DEMOTED during the run (the shadowed points measured FP32): {out['demoted']}",
        markup=False,
    )
    return summary


def main() -> int:
    return example_builds.main(__doc__ or "", "bench_shadow", _specs, run, render)


if __name__ == "__main__":
    raise SystemExit(main())
