"""Regression gate: compare a sweep with a stored baseline; fail when throughput drops or p95 rises too much.

Only meaningful on stable hardware (a dedicated CI runner, the same machine type, nothing else running):
on shared machines, noise alone can move these numbers by tens of percent.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonforge.errors import TritonforgeError
from tritonforge.perf.sweep import SweepResult


@dataclass
class Change:
    model: str
    series: str
    batch_size: int
    load: str
    metric: str  # "throughput" | "p95" | "failed" | "void" (a compute point the cache answered)
    baseline: float
    current: float

    @property
    def relative(self) -> float:
        return (self.current - self.baseline) / self.baseline if self.baseline else 0.0

    def describe(self) -> str:
        where = f"{self.model} {self.series} b{self.batch_size} {self.load}"
        if self.metric in ("failed", "void"):
            return f"{where}: measured in the baseline, {self.metric} now"
        unit = "infer/s" if self.metric == "throughput" else "ms"
        scale = 1.0 if self.metric == "throughput" else 1e-3
        return f"{where}: {self.metric} {self.baseline * scale:.2f} -> {self.current * scale:.2f} {unit} ({self.relative:+.1%})"


@dataclass
class GateResult:
    compared: int
    regressions: list[Change]
    changes: list[Change]

    @property
    def passed(self) -> bool:
        return not self.regressions


def compare(
    current: SweepResult, baseline: SweepResult, max_throughput_drop: float = 0.10, max_p95_rise: float = 0.20
) -> GateResult:
    """Points measured in both (same model, series, batch size and load level) are compared; a point the
    baseline measured that failed now is a regression."""

    def key(p):
        return (p.model, p.label, p.batch_size, p.concurrency, p.request_rate)

    base = {key(p): p for p in baseline.points if p.ok}
    changes, regressions, compared = [], [], 0
    for p in current.points:
        b = base.get(key(p))
        if b is None:
            continue
        compared += 1
        load = f"c{p.concurrency}" if p.concurrency is not None else f"r{p.request_rate:g}/s"
        if not p.ok:
            regressions.append(Change(p.model, p.label, p.batch_size, load, "void" if p.void else "failed", b.throughput, 0.0))
            continue
        tput = Change(p.model, p.label, p.batch_size, load, "throughput", b.throughput, p.throughput)
        p95 = Change(p.model, p.label, p.batch_size, load, "p95", b.p95_us, p.p95_us)
        changes += [tput, p95]
        if tput.relative < -max_throughput_drop:
            regressions.append(tput)
        if p95.relative > max_p95_rise:
            regressions.append(p95)
    if compared == 0:
        raise TritonforgeError(
            "the baseline has no point in common with this run (model, series, batch size and load "
            "must match); record a new baseline with --save-baseline"
        )
    return GateResult(compared, regressions, changes)
