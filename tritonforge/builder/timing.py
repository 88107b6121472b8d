"""Latency and throughput of several runtimes on the same inputs, measured side by side.

Each variant runs in windows of `window_s` seconds until the medians of its last `stable_windows` windows agree
within `stable_pct` percent (or `max_windows` is reached), as Triton Model Navigator does. Variants take turns
window by window (interleaved, rotating who goes first), so drift on a shared machine hits all of them alike
and ratios against FP32 measured in the same run are fair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from tritonforge.builder.data import Dataset
from tritonforge.builder.runtimes import LocalTimer, Timer
from tritonforge.serving.batching import Batch
from tritonforge.spec import TimingSpec


@dataclass
class LatencyStats:
    batch_size: int
    runs: int
    windows: int
    stable: bool
    p50_ms: float
    p95_ms: float
    mean_ms: float
    throughput: float  # samples per second, one request at a time

    def to_dict(self) -> dict:
        return asdict(self)


def timing_input(data: Dataset, batch_size: int) -> Batch:
    """A batch of exactly `batch_size` real samples (repeated if the data has fewer in one batch)."""
    best = max(data.batches, key=lambda b: len(next(iter(b.values()))))
    for batch in data.batches:
        if len(next(iter(batch.values()))) >= batch_size:
            best = batch
            break
    n = len(next(iter(best.values())))
    idx = np.arange(batch_size) % n
    return {k: np.ascontiguousarray(v[idx]) for k, v in best.items()}


class _Series:
    def __init__(self) -> None:
        self.windows: list[list[float]] = []

    def stable(self, k: int, pct: float) -> bool:
        if len(self.windows) < k:
            return False
        medians = [float(np.median(w)) for w in self.windows[-k:]]
        return (max(medians) - min(medians)) / max(min(medians), 1e-12) * 100 <= pct


def measure(
    timers: Mapping[str, Timer | Callable[[Batch], object]],
    inputs: dict[int, Batch],
    settings: TimingSpec,
    on_window: Callable[[], None] | None = None,
) -> dict[str, dict[int, LatencyStats]]:
    """Time every runtime at every batch size; returns stats per runtime id and batch size. A plain callable is
    timed in this process; a Timer times its own runs (the serving environment's worker does, so the pipe to it
    is not in the figures)."""
    ids = list(timers)
    timed = {rid: t if isinstance(t, Timer) else LocalTimer(t) for rid, t in timers.items()}
    results: dict[str, dict[int, LatencyStats]] = {rid: {} for rid in ids}
    for batch_size, batch in inputs.items():
        key = f"batch{batch_size}"
        for rid in ids:
            timed[rid].prepare(key, batch)
            if settings.warmup_runs:
                timed[rid].window(key, settings.warmup_runs, 0.0)
        series = {rid: _Series() for rid in ids}
        for w in range(settings.max_windows):
            order = ids[w % len(ids) :] + ids[: w % len(ids)]
            for rid in order:
                if series[rid].stable(settings.stable_windows, settings.stable_pct):
                    continue
                series[rid].windows.append(timed[rid].window(key, settings.min_runs_per_window, settings.window_s))
            if on_window:
                on_window()
            if all(s.stable(settings.stable_windows, settings.stable_pct) for s in series.values()):
                break
        for rid, s in series.items():
            steady = np.array([x for win in s.windows[-settings.stable_windows :] for x in win]) * 1000
            results[rid][batch_size] = LatencyStats(
                batch_size=batch_size,
                runs=sum(len(win) for win in s.windows),
                windows=len(s.windows),
                stable=s.stable(settings.stable_windows, settings.stable_pct),
                p50_ms=float(np.percentile(steady, 50)),
                p95_ms=float(np.percentile(steady, 95)),
                mean_ms=float(steady.mean()),
                throughput=float(batch_size / (steady.mean() / 1000)),
            )
    return results
