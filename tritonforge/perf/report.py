"""perf_report.md, perf_report.json and PNG plots from a sweep; side by side with ratios to a baseline model."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from tritonforge.extras import missing, require
from tritonforge.perf.analyzer import PerfPoint
from tritonforge.perf.sweep import SweepResult

REPORT_MD = "perf_report.md"
REPORT_JSON = "perf_report.json"
PLOTS = ("latency_vs_throughput.png", "throughput_vs_concurrency.png", "server_time_breakdown.png")


def _load(p: PerfPoint) -> str:
    return f"c{p.concurrency}" if p.concurrency is not None else f"r{p.request_rate:g}/s"


def _key(p: PerfPoint) -> tuple:
    return (p.label, p.batch_size, p.concurrency, p.request_rate)


def ratios(result: SweepResult, baseline: str) -> dict[tuple[str, tuple], dict[str, float]]:
    """Throughput and p50/p95 ratios of each model to `baseline` at the same batch size and load."""
    base = {_key(p): p for p in result.points if p.model == baseline and p.ok}
    out = {}
    for p in result.points:
        b = base.get(_key(p))
        if b is None or p.model == baseline or not p.ok:
            continue
        out[(p.model, _key(p))] = {
            "throughput": p.throughput / b.throughput if b.throughput else float("nan"),
            "p50": p.p50_us / b.p50_us if b.p50_us else float("nan"),
            "p95": p.p95_us / b.p95_us if b.p95_us else float("nan"),
        }
    return out


def markdown(result: SweepResult, baseline: str | None = None) -> str:
    cpu = result.machine["cpu"]
    gpu = result.machine["gpu"]
    lines = [
        "# Performance report",
        "",
        f"perf_analyzer against `{result.settings['url']}` ({result.settings['protocol']}), "
        f"{result.settings['measurement_mode']} of {result.settings['measurement_interval_ms']} ms, stable within "
        f"{result.settings['stability_pct']}%. Series: compute = inputs never sent before (no cache hit: the "
        f"model's compute), cache = a few repeated inputs (the cache answers), validation = the build's held-out "
        f"samples. "
        f"Machine: {cpu['model']} ({cpu['cores']} cores); GPU: {gpu.get('name') or gpu.get('absent')}. "
        f"{len(result.points)} points in {result.duration_s:.0f} s"
        + (" (interrupted: partial)" if result.interrupted else "")
        + ".",
        "",
        "Latencies in ms. Server times are averages per request: queue, compute input/infer/output.",
        "",
    ]
    rel = ratios(result, baseline) if baseline else {}
    header = [
        "model",
        "series",
        "batch",
        "load",
        "infer/s",
        "p50",
        "p90",
        "p95",
        "p99",
        "queue",
        "compute in",
        "compute infer",
        "compute out",
        "client send+recv",
        "cache hits",
    ]
    if rel:
        header += [f"infer/s vs {baseline}", f"p50 vs {baseline}"]
    gpu_cols = any("util_mean_pct" in p.gpu for p in result.points)
    if gpu_cols:
        header += ["GPU util %", "GPU mem MB"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    failed = [p for p in result.points if not p.ok]
    for p in result.points:
        if not p.ok:
            lines.append(
                "| " + " | ".join([p.model, p.label, str(p.batch_size), _load(p), "FAILED"] + ["-"] * (len(header) - 5)) + " |"
            )
            continue
        row = [p.model, p.label, str(p.batch_size), _load(p), f"{p.throughput:.1f}"] + [
            f"{v / 1000:.2f}"
            for v in (
                p.p50_us,
                p.p90_us,
                p.p95_us,
                p.p99_us,
                p.server_queue_us,
                p.server_compute_input_us,
                p.server_compute_infer_us,
                p.server_compute_output_us,
                p.client_send_us + p.client_recv_us,
            )
        ]
        row.append("-" if p.cache_hit_rate is None else f"{p.cache_hit_rate:.0%}")
        if rel:
            r = rel.get((p.model, _key(p)))
            row += [f"{r['throughput']:.2f}x", f"{r['p50']:.2f}x"] if r else ["(baseline)" if p.model == baseline else "-", "-"]
        if gpu_cols:
            row += [f"{p.gpu.get('util_mean_pct', 0):.0f}", f"{p.gpu.get('memory_peak_mb', 0):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    composed = [p for p in result.points if p.ok and p.composing]
    if composed:
        lines += [
            "",
            "## Ensemble steps",
            "",
            "Each step of an ensemble during the point (Triton's statistics, as Model Analyzer shows composing "
            "models): requests it answered, the average batch its executions ran, its server time per request (ms).",
            "",
            "| model | series | batch | load | step | requests | avg batch | server ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in composed:
            for step, f in p.composing.items():
                lines.append(
                    f"| {p.model} | {p.label} | {p.batch_size} | {_load(p)} | {step} | {f['requests']} | "
                    f"{f['avg_batch']:.2f} | {f['server_ms']:.3f} |"
                )
    if failed:
        lines += ["", "## Points that could not be measured", ""]
        lines += [
            f"- {p.model} {p.label} b{p.batch_size} {_load(p)}: {p.error.splitlines()[-1] if p.error else ''}" for p in failed
        ]
    lines += ["", "Plots: " + ", ".join(f"[{name}]({name})" for name in PLOTS), ""]
    return "\n".join(lines)


def _series(result: SweepResult) -> dict[tuple[str, str, int], list[PerfPoint]]:
    series: dict[tuple[str, str, int], list[PerfPoint]] = defaultdict(list)
    for p in result.points:
        if p.ok:
            series[(p.model, p.label, p.batch_size)].append(p)
    return series


def plots(result: SweepResult, out_dir: Path) -> list[Path]:
    """Latency against throughput, throughput against concurrency, server time breakdown."""
    matplotlib = require("matplotlib", "perf", "the plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    series = _series(result)
    paths = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, ((model, label, batch), pts) in enumerate(sorted(series.items())):
        color = f"C{i % 10}"
        x = [p.throughput for p in pts]
        ax.plot(x, [p.p50_us / 1000 for p in pts], "o-", color=color, label=f"{model} {label} b{batch} p50")
        ax.plot(x, [p.p95_us / 1000 for p in pts], "s--", color=color, alpha=0.7, label=f"{model} {label} b{batch} p95")
        for p in pts:
            ax.annotate(_load(p), (p.throughput, p.p50_us / 1000), fontsize=7, xytext=(3, 3), textcoords="offset points")
    paths.append(
        _finish(
            plt,
            fig,
            ax,
            "throughput (inferences/s)",
            "latency (ms)",
            "Latency against throughput (labels: concurrency)",
            out_dir / PLOTS[0],
            legend_size=7,
        )
    )

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, ((model, label, batch), pts) in enumerate(sorted(series.items())):
        pts = [p for p in pts if p.concurrency is not None]
        if pts:
            ax.plot(
                [p.concurrency for p in pts],
                [p.throughput for p in pts],
                "o-",
                color=f"C{i % 10}",
                label=f"{model} {label} b{batch}",
            )
    ax.set_xscale("log", base=2)
    paths.append(
        _finish(
            plt,
            fig,
            ax,
            "concurrency (requests in flight)",
            "throughput (inferences/s)",
            "Throughput against concurrency",
            out_dir / PLOTS[1],
        )
    )

    parts = [
        ("queue", "server_queue_us"),
        ("compute input", "server_compute_input_us"),
        ("compute infer", "server_compute_infer_us"),
        ("compute output", "server_compute_output_us"),
    ]
    measured = [p for p in result.points if p.ok]
    labels = [f"{p.model} {p.label}\nb{p.batch_size} {_load(p)}" for p in measured]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(labels)), 5))
    bottom = [0.0] * len(labels)
    for j, (name, attr) in enumerate(parts):
        values = [getattr(p, attr) / 1000 for p in measured]
        ax.bar(range(len(labels)), values, bottom=bottom, label=name, color=f"C{j}")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    other = [max(0.0, p.avg_us / 1000 - b) for p, b in zip(measured, bottom, strict=True)]
    ax.bar(range(len(labels)), other, bottom=bottom, label="network + client + other", color="0.75")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=6, rotation=90)
    paths.append(
        _finish(
            plt,
            fig,
            ax,
            "",
            "average latency (ms)",
            "Where the time goes (server averages per request)",
            out_dir / PLOTS[2],
            grid=False,
        )
    )
    return paths


def _finish(plt, fig, ax, xlabel: str, ylabel: str, title: str, path: Path, legend_size: int = 8, grid: bool = True) -> Path:
    """Labels, legend, layout, save as PNG, close."""
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if grid:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(result: SweepResult, out_dir: Path, baseline: str | None = None) -> dict[str, Path]:
    """perf_report.md, perf_report.json and the plots in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    if baseline:
        data["baseline_model"] = baseline
        data["ratios"] = [
            {"model": m, "series": k[0], "batch_size": k[1], "concurrency": k[2], "request_rate": k[3], **r}
            for (m, k), r in ratios(result, baseline).items()
        ]
    (out_dir / REPORT_JSON).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    no_plots = missing("matplotlib", "perf", "the plots") if result.points else None
    (out_dir / REPORT_MD).write_text(markdown(result, baseline) + (f"\nPlots not drawn: {no_plots}\n" if no_plots else ""))
    written = {"markdown": out_dir / REPORT_MD, "json": out_dir / REPORT_JSON}
    if result.points and not no_plots:
        written.update({p.stem: p for p in plots(result, out_dir)})
    return written


def load_result(path: Path) -> SweepResult:
    return SweepResult.from_dict(json.loads(Path(path).read_text()))
