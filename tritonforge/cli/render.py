"""Rendering for the CLI: rich stage progress and tables. The library itself prints nothing."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tritonforge.repository.build_report import BuildReport

# Piped output (CI logs, tests) gets a wide fixed width so tables are not squeezed to 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 180)


class RichReporter:
    """Shows a spinner per build stage and a tick with its duration when it ends."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        label = escape(f"{self.prefix}{name}")  # library text, never markup
        try:
            with console.status(label):
                yield
        except BaseException:
            console.print(f"[red]✗[/] {label} [dim]({time.perf_counter() - start:.1f}s)[/]")
            raise
        console.print(f"[green]✓[/] {label} [dim]({time.perf_counter() - start:.1f}s)[/]")

    def info(self, message: str) -> None:
        console.print(f"  {escape(self.prefix + message)}")


def model_states_table(states) -> Table:
    table = Table(title="models", title_justify="left")
    table.add_column("model")
    table.add_column("version")
    table.add_column("state")
    table.add_column("reason", overflow="fold")
    for s in states:
        color = "green" if s.state == "READY" else "yellow"
        table.add_row(s.name, s.version or "-", f"[{color}]{s.state}[/]", escape(s.reason or ""))
    return table


def export_check_table(check: dict) -> Table:
    table = Table(title=f"ONNX FP32 vs source model (atol {check['atol']:g}, rtol {check['rtol']:g})", title_justify="left")
    for col in ("output", "samples", "max abs", "max rel", "min cosine", "within tolerance"):
        table.add_column(col)
    for name, m in check["outputs"].items():
        ok = m["violation"] <= 1 and m["nonfinite"] == 0
        table.add_row(
            name,
            str(m["samples"]),
            f"{m['max_abs']:.3g}",
            f"{m['max_rel']:.3g}",
            f"{m['min_cosine']:.6f}",
            "[green]yes[/]" if ok else "[red]no[/]",
        )
    return table


def variants_table(report: BuildReport) -> Table:
    """One row per variant: gate decision, accuracy against FP32, speed against the fastest exact-FP32
    configuration (same run), where published."""
    batches = [str(b) for b in report.timing.batch_sizes]
    against = report.timing.speedups_against
    short = "FP32" if against == "onnx_fp32" else against.removeprefix("onnx_")
    runner = report.serving.in_process_runner if report.serving else None
    caption = f"in-process runner (what the local server and the last rungs serve): {runner}" if runner else None
    table = Table(
        title=f"{report.model}: variants (primary: {report.primary})",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    table.add_column("variant", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    table.add_column("min cos")
    table.add_column("top-1")
    table.add_column("accuracy")
    for b in batches:
        table.add_column(f"p50 ms b{b}")
        table.add_column(f"vs {short} b{b}")
    table.add_column("published as", no_wrap=True)
    colors = {"passed": "green", "rejected": "red", "skipped": "yellow", "error": "red"}
    for v in report.variants:
        cos, top1, acc = v.min_cosine(), v.top1(), v.accuracy()
        row = [
            v.id + (" (in-process)" if v.id == runner else ""),
            f"[{colors[v.status]}]{v.status}[/]",
            "-" if cos is None else f"{cos:.4f}",
            "-" if top1 is None else f"{top1:.4f}",
            "-" if acc is None else f"{acc:.4f}",
        ]
        for b in batches:
            t = v.timing.get(b)
            s = v.speedup.get(b)
            row += ["-" if not t else f"{t['p50_ms']:.3f}", "-" if not s else f"{s:.2f}x"]
        row.append(v.published_as or "-")
        table.add_row(*row)
    return table


def not_published_lines(report: BuildReport) -> list[str]:
    return [f"{v.id}: {v.status}: {v.reason}" for v in report.variants if v.status != "passed"]


def repository_check_lines(report: BuildReport) -> list[str]:
    """How each staged model was checked before publication (tritonserver, config rules, or skipped)."""
    check = report.repository_check
    if not check:
        return []
    lines = [f"repository check ({check.seconds:.1f}s; variants gated and timed in {check.runtime}):"]
    lines += [f"  {c.model}: {c.how}: {c.detail}" for c in check.models]
    return lines
