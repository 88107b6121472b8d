"""Rendering for the CLI: rich stage progress and tables. The library itself prints nothing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class RichReporter:
    """Shows a spinner per build stage and a tick with its duration when it ends."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        label = f"{self.prefix}{name}"
        try:
            with console.status(label):
                yield
        except BaseException:
            console.print(f"[red]✗[/] {label} [dim]({time.perf_counter() - start:.1f}s)[/]")
            raise
        console.print(f"[green]✓[/] {label} [dim]({time.perf_counter() - start:.1f}s)[/]")

    def info(self, message: str) -> None:
        console.print(f"  {self.prefix}{message}")


def model_states_table(states) -> Table:
    table = Table(title="models", title_justify="left")
    table.add_column("model")
    table.add_column("version")
    table.add_column("state")
    table.add_column("reason", overflow="fold")
    for s in states:
        color = "green" if s.state == "READY" else "yellow"
        table.add_row(s.name, s.version or "-", f"[{color}]{s.state}[/]", s.reason or "")
    return table


def export_check_table(check: dict) -> Table:
    table = Table(title=f"ONNX FP32 vs source model (atol {check['atol']:g}, rtol {check['rtol']:g})", title_justify="left")
    for col in ("output", "samples", "max abs", "max rel", "min cosine", "within tolerance"):
        table.add_column(col)
    for name, m in check["outputs"].items():
        ok = m["violation"] <= 1 and m["nonfinite"] == 0
        table.add_row(name, str(m["samples"]), f"{m['max_abs']:.3g}", f"{m['max_rel']:.3g}", f"{m['min_cosine']:.6f}",
                      "[green]yes[/]" if ok else "[red]no[/]")
    return table
