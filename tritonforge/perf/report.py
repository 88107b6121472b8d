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


TOP_N = 5  # points in the top table, per model and series


def _settings(p: PerfPoint) -> str:
    load = f"concurrency {p.concurrency}" if p.concurrency is not None else f"request rate {p.request_rate:g}/s"
    return f"{load}, batch {p.batch_size}"


def _stability(p: PerfPoint, settings: dict) -> str:
    """What a point's windows agreed within, and their length where it is not the one asked for."""
    if p.stability_pct is None:
        return "-"
    longer = p.window_ms and p.window_ms != settings.get("measurement_interval_ms")
    return f"{p.stability_pct:g}%" + (f" ({p.window_ms} ms windows)" if longer else "")


def _fits(p: PerfPoint, budget_ms: float | None) -> bool:
    return p.ok and (budget_ms is None or p.p99_us / 1000 <= budget_ms)


def ranked(points: list[PerfPoint], budget_ms: float | None = None) -> list[PerfPoint]:
    """The objective, as Model Analyzer's: the highest throughput, among points whose p99 is within
    `budget_ms` when one is given; measured points only (never a failed or void one), best first."""
    return sorted((p for p in points if _fits(p, budget_ms)), key=lambda p: p.throughput, reverse=True)


def _groups(result: SweepResult) -> dict[tuple[str, str], list[PerfPoint]]:
    """The points of each model and series, in the order measured (the compute series first)."""
    groups: dict[tuple[str, str], list[PerfPoint]] = defaultdict(list)
    for p in result.points:
        groups[(p.model, p.label)].append(p)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][1] != "compute", list(groups).index(kv[0]))))


def _gain_pct(p: PerfPoint, first: PerfPoint) -> float | None:
    """How much more throughput `p` reached than its series' first point, in percent (None: no first figure)."""
    return 100 * (p.throughput / first.throughput - 1) if first.ok and first.throughput else None


def _summary(p: PerfPoint) -> dict:
    """Where a point was measured and what it reached."""
    return {
        "batch_size": p.batch_size,
        "concurrency": p.concurrency,
        "request_rate": p.request_rate,
        "throughput": p.throughput,
        "p99_ms": p.p99_us / 1000,
    }


def verdicts(result: SweepResult, budget_ms: float | None = None) -> list[dict]:
    """Per model and series: the best point under the objective (see `ranked`) and its gain over the series'
    first point, which is the spec's settings at the sweep's first batch size and load."""
    out = []
    for (model, series), points in _groups(result).items():
        first, best = points[0], next(iter(ranked(points, budget_ms)), None)
        entry: dict = {"model": model, "series": series, "p99_budget_ms": budget_ms, "best": None, "first": None}
        if best is not None:
            entry["best"] = _summary(best) | {"stability_pct": best.stability_pct}
        if first.ok:
            entry["first"] = _summary(first)
            if best is not None and (gain := _gain_pct(best, first)) is not None:
                entry["gain_pct"] = gain
        entry["text"] = _verdict_text(points, first, best, budget_ms, result.settings.get("stability_pct"))
        entry["line"] = f"{model} ({series}): {entry['text']}"
        out.append(entry)
    return out


def _verdict_text(
    points: list[PerfPoint],
    first: PerfPoint,
    best: PerfPoint | None,
    budget_ms: float | None,
    asked: float | None,
) -> str:
    measured = [p for p in points if p.ok]
    if not measured:
        return "no point measured (see the points that could not be measured or were voided)"
    if best is None:
        low = min(measured, key=lambda p: p.p99_us)
        return f"no point kept p99 within {budget_ms:g} ms (lowest p99 {low.p99_us / 1000:.2f} ms, {_settings(low)})"
    within = f" within p99 {budget_ms:g} ms" if budget_ms is not None else ""
    line = f"best{within}: {best.throughput:.1f} infer/s at p99 {best.p99_us / 1000:.2f} ms ({_settings(best)})"
    if asked is not None and best.stability_pct is not None and best.stability_pct > asked:
        line += f", stable within {best.stability_pct:g}% only"
    if best is first:
        line += "; the first point (the spec's settings at the sweep's first load) is the best"
    elif not first.ok:
        line += f"; the first point ({_settings(first)}) was {'void' if first.void else 'not measured'}: no gain given"
    elif (gain := _gain_pct(best, first)) is not None:
        line += (
            f", {gain:+.0f}% over the first point ({_settings(first)}: {first.throughput:.1f} infer/s, "
            f"p99 {first.p99_us / 1000:.2f} ms)"
        )
    if budget_ms is not None:
        over = [p for p in measured if not _fits(p, budget_ms)]
        line += f"; {len(over)} of {len(measured)} points over the budget" if over else "; every point within the budget"
    return line


def verdict_lines(result: SweepResult, budget_ms: float | None = None) -> list[str]:
    return [v["line"] for v in verdicts(result, budget_ms)]


def stability_summary(result: SweepResult) -> str:
    """What the windows agreed within: the asked percentage only where every measured point reached it."""
    asked = result.settings["stability_pct"]
    measured = [p for p in result.points if p.ok]
    looser = [p for p in measured if p.stability_pct is not None and p.stability_pct > asked]
    unknown = [p for p in measured if p.stability_pct is None]
    if not measured:
        return f"windows asked to agree within {asked:g}%"
    if not looser and not unknown:
        return f"every point stable within {asked:g}% (its windows agreed within it)"
    parts = [f"windows asked to agree within {asked:g}%"]
    if looser:
        levels = ", ".join(f"{x:g}%" for x in sorted({p.stability_pct for p in looser if p.stability_pct is not None}))
        parts.append(
            f"{len(looser)} of {len(measured)} points did not get there and were measured with longer windows "
            f"within {levels} (column 'stable within')"
        )
    if unknown:
        parts.append(f"{len(unknown)} of {len(measured)} points without a recorded stability")
    return "; ".join(parts)


SHADOW_NOTE = (
    "Shadowed: answers of the point the model also compared with its FP32 reference off the request path "
    "(serving.shadow), and in brackets samples it dropped because it was behind; their cost is in these "
    "latencies and CPU figures (measure a build with shadow.fraction 0 beside it to see it)."
)


def _shadowed(p: PerfPoint) -> str:
    """A point's shadow samples: compared (dropped[, failed])."""
    if not p.shadow:
        return "-"
    failed = f", {p.shadow['errors']} failed" if p.shadow.get("errors") else ""
    return f"{p.shadow['compared']} ({p.shadow['dropped']}{failed})"


def _cpu_summary(result: SweepResult) -> str:
    cpus = [p.cpu for p in result.points if p.ok and p.cpu]
    if any("cpu_pct" in c for c in cpus):
        return (
            "Server CPU: the local tritonserver and its Python-backend stubs (/proc), over each perf_analyzer run: "
            "% of one core (200% = two cores busy), CPU ms per inference answered, peak resident memory."
        )
    reasons = {str(c["absent"]) for c in cpus if c.get("absent")}
    return f"Server CPU: not measured ({'; '.join(sorted(reasons))})." if reasons else ""


def markdown(result: SweepResult, baseline: str | None = None, budget_ms: float | None = None) -> str:
    cpu = result.machine["cpu"]
    gpu = result.machine["gpu"]
    found = verdicts(result, budget_ms)
    objective = (
        f"the highest throughput with p99 within {budget_ms:g} ms"
        if budget_ms is not None
        else "the highest throughput (no --p99-budget-ms given)"
    )
    lines = ["# Performance report", ""]
    lines += [f"- **{v['model']} ({v['series']})**: {v['text']}" for v in found]
    lines += ["", f"Objective: {objective}. The first point is the spec's settings at the sweep's first batch size and load."]
    lines += _top_table(result, budget_ms)
    lines += [
        "",
        f"perf_analyzer against `{result.settings['url']}` ({result.settings['protocol']}), "
        f"{result.settings['measurement_mode']} of {result.settings['measurement_interval_ms']} ms; "
        f"{stability_summary(result)}. Series: compute = inputs never sent before (a point with any cache hit is "
        f"measured again with fresh inputs, and void if it has hits again), cache = a few repeated inputs (the "
        f"cache answers), validation = the build's held-out samples. "
        f"Machine: {cpu['model']} ({cpu['cores']} cores); GPU: {gpu.get('name') or gpu.get('absent')}. "
        f"{len(result.points)} points in {result.duration_s:.0f} s"
        + (" (interrupted: partial)" if result.interrupted else "")
        + ".",
        "",
        " ".join(
            x
            for x in (
                "Latencies in ms. Server times are averages per request: queue, compute input/infer/output.",
                _cpu_summary(result),
                SHADOW_NOTE if any(p.shadow for p in result.points) else "",
            )
            if x
        ),
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
        "stable within",
    ]
    if rel:
        header += [f"infer/s vs {baseline}", f"p50 vs {baseline}"]
    cpu_cols = any("cpu_pct" in p.cpu for p in result.points)
    if cpu_cols:
        header += ["server CPU %", "CPU ms/infer", "server RSS MB"]
    gpu_cols = any("util_mean_pct" in p.gpu for p in result.points)
    if gpu_cols:
        header += ["GPU util %", "GPU mem MB"]
    shadow_col = any(p.shadow for p in result.points)
    if shadow_col:
        header.append("shadowed (dropped)")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in result.points:
        if not p.ok:
            status = "FAILED" if p.error else "VOID"
            lines.append(
                "| " + " | ".join([p.model, p.label, str(p.batch_size), _load(p), status] + ["-"] * (len(header) - 5)) + " |"
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
        row.append(_stability(p, result.settings))
        if rel:
            r = rel.get((p.model, _key(p)))
            row += [f"{r['throughput']:.2f}x", f"{r['p50']:.2f}x"] if r else ["(baseline)" if p.model == baseline else "-", "-"]
        if cpu_cols:
            row += [
                f"{p.cpu['cpu_pct']:.0f}" if "cpu_pct" in p.cpu else "-",
                f"{p.cpu['cpu_ms_per_inference']:.3f}" if "cpu_ms_per_inference" in p.cpu else "-",
                f"{p.cpu['rss_peak_mb']:.0f}" if "rss_peak_mb" in p.cpu else "-",
            ]
        if gpu_cols:
            row += [f"{p.gpu.get('util_mean_pct', 0):.0f}", f"{p.gpu.get('memory_peak_mb', 0):.0f}"]
        if shadow_col:
            row.append(_shadowed(p))
        lines.append("| " + " | ".join(row) + " |")
    lines += _sections(result)
    lines += ["", "Plots: " + ", ".join(f"[{name}]({name})" for name in PLOTS), ""]
    return "\n".join(lines)


def _sections(result: SweepResult) -> list[str]:
    """The report's sections after its table: ensemble steps, notes, void and failed points."""
    lines: list[str] = []
    failed = [p for p in result.points if p.error]
    void = [p for p in result.points if p.void and not p.error]
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
    noted = [p for p in result.points if p.ok and p.note]
    if noted:
        lines += ["", "## Notes", ""]
        lines += [f"- {p.model} {p.label} b{p.batch_size} {_load(p)}: {p.note}" for p in noted]
    if void:
        lines += [
            "",
            "## Points voided",
            "",
            "Measured, but not a measurement of what the series says; no number of theirs is shown.",
            "",
        ]
        lines += [f"- {p.model} {p.label} b{p.batch_size} {_load(p)}: {p.void}" for p in void]
    if failed:
        lines += ["", "## Points that could not be measured", ""]
        lines += [
            f"- {p.model} {p.label} b{p.batch_size} {_load(p)}: {p.error.splitlines()[-1] if p.error else ''}" for p in failed
        ]
    return lines


def _top_table(result: SweepResult, budget_ms: float | None) -> list[str]:
    """The TOP_N best points of each model and series under the objective, with their gain over its first point."""
    rows = []
    for (model, series), points in _groups(result).items():
        first = points[0]
        for rank, p in enumerate(ranked(points, budget_ms)[:TOP_N], 1):
            pct = _gain_pct(p, first)
            gain = "-" if pct is None else f"{pct:+.0f}%"
            rows.append(
                f"| {model} | {series} | {rank} | {p.batch_size} | {_load(p)} | {p.throughput:.1f} | "
                f"{p.p50_us / 1000:.2f} | {p.p99_us / 1000:.2f} | {gain} | " + _stability(p, result.settings) + " |"
            )
    if not rows:
        return []
    return [
        "",
        f"## Best points (top {TOP_N} per model and series)",
        "",
        "| model | series | rank | batch | load | infer/s | p50 ms | p99 ms | vs first point | stable within |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _series(result: SweepResult) -> dict[tuple[str, str, int], list[PerfPoint]]:
    series: dict[tuple[str, str, int], list[PerfPoint]] = defaultdict(list)
    for p in result.points:
        if p.ok:
            series[(p.model, p.label, p.batch_size)].append(p)
    return series


def concurrency_ticks(levels: set[int]) -> list[int] | None:
    """Ticks of the linear concurrency axis: every measured level while they are few and far enough apart to
    read, else None (matplotlib's whole numbers)."""
    ordered = sorted(levels)
    if not ordered or len(ordered) > 8:
        return None
    gaps = [b - a for a, b in zip([0, *ordered[:-1]], ordered, strict=True)]
    return ordered if min(gaps) >= ordered[-1] / 16 else None


LABEL_SIZE = 11  # axis labels, tick labels and annotations: readable in a report at its saved size


def plots(result: SweepResult, out_dir: Path) -> list[Path]:
    """Latency against throughput, throughput against concurrency (a linear axis, integer ticks), server time
    breakdown (one horizontal bar per point, its label beside it)."""
    matplotlib = require("matplotlib", "perf", "the plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir.mkdir(parents=True, exist_ok=True)
    series = _series(result)
    paths = []

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, ((model, label, batch), pts) in enumerate(sorted(series.items())):
        color = f"C{i % 10}"
        x = [p.throughput for p in pts]
        ax.plot(x, [p.p50_us / 1000 for p in pts], "o-", color=color, label=f"{model} {label} b{batch} p50")
        ax.plot(x, [p.p99_us / 1000 for p in pts], "s--", color=color, alpha=0.7, label=f"{model} {label} b{batch} p99")
        for p in pts:
            ax.annotate(_load(p), (p.throughput, p.p50_us / 1000), fontsize=9, xytext=(4, 4), textcoords="offset points")
    paths.append(
        _finish(
            plt,
            fig,
            ax,
            "throughput (inferences/s)",
            "latency (ms)",
            "Latency against throughput (labels: load)",
            out_dir / PLOTS[0],
        )
    )

    fig, ax = plt.subplots(figsize=(9, 5.5))
    levels: set[int] = set()
    for i, ((model, label, batch), pts) in enumerate(sorted(series.items())):
        at = [(p.concurrency, p) for p in pts if p.concurrency is not None]
        if at:
            levels.update(c for c, _ in at)
            ax.plot(
                [c for c, _ in at],
                [p.throughput for _, p in at],
                "o-",
                color=f"C{i % 10}",
                label=f"{model} {label} b{batch}",
            )
    ticks = concurrency_ticks(levels)
    if ticks:
        ax.set_xticks(ticks)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
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
    labels = [f"{p.model} {p.label} b{p.batch_size} {_load(p)}" for p in measured]
    fig, ax = plt.subplots(figsize=(10, max(3.5, 1.5 + 0.45 * len(labels))))
    rows = list(range(len(labels)))[::-1]  # the first point on top
    left = [0.0] * len(labels)
    for j, (name, attr) in enumerate(parts):
        values = [getattr(p, attr) / 1000 for p in measured]
        ax.barh(rows, values, left=left, label=name, color=f"C{j}")
        left = [b + v for b, v in zip(left, values, strict=True)]
    other = [max(0.0, p.avg_us / 1000 - b) for p, b in zip(measured, left, strict=True)]
    ax.barh(rows, other, left=left, label="network + client + other", color="0.75")
    ax.set_yticks(rows)
    ax.set_yticklabels(labels, fontsize=LABEL_SIZE)
    paths.append(
        _finish(
            plt,
            fig,
            ax,
            "average latency (ms)",
            "",
            "Where the time goes (server averages per request)",
            out_dir / PLOTS[2],
            grid=False,
            legend_below=True,
        )
    )
    return paths


def _finish(
    plt, fig, ax, xlabel: str, ylabel: str, title: str, path: Path, grid: bool = True, legend_below: bool = False
) -> Path:
    """Labels, legend, layout, save as PNG, close."""
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=LABEL_SIZE + 1)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=LABEL_SIZE + 1)
    ax.set_title(title, fontsize=LABEL_SIZE + 2)
    ax.tick_params(labelsize=LABEL_SIZE)
    if grid:
        ax.grid(alpha=0.3)
    if legend_below:  # beside bars that fill the axes: under them, in one row
        ax.legend(fontsize=LABEL_SIZE - 1, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5, frameon=False)
    else:
        ax.legend(fontsize=LABEL_SIZE - 2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    result: SweepResult, out_dir: Path, baseline: str | None = None, budget_ms: float | None = None
) -> dict[str, Path]:
    """perf_report.md, perf_report.json and the plots in `out_dir`; the verdict under the objective (the highest
    throughput, with p99 within `budget_ms` if given) leads the markdown and is in the JSON."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    data["verdicts"] = verdicts(result, budget_ms)
    if baseline:
        data["baseline_model"] = baseline
        data["ratios"] = [
            {"model": m, "series": k[0], "batch_size": k[1], "concurrency": k[2], "request_rate": k[3], **r}
            for (m, k), r in ratios(result, baseline).items()
        ]
    (out_dir / REPORT_JSON).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    no_plots = missing("matplotlib", "perf", "the plots") if result.points else None
    (out_dir / REPORT_MD).write_text(
        markdown(result, baseline, budget_ms) + (f"\nPlots not drawn: {no_plots}\n" if no_plots else "")
    )
    written = {"markdown": out_dir / REPORT_MD, "json": out_dir / REPORT_JSON}
    if result.points and not no_plots:
        written.update({p.stem: p for p in plots(result, out_dir)})
    return written


def load_result(path: Path) -> SweepResult:
    return SweepResult.from_dict(json.loads(Path(path).read_text()))
