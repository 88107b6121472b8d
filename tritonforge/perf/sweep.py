"""Sweeps: perf_analyzer over models x batch sizes x concurrency (or request rate), one process per point,
with a progress bar. Ctrl-C stops the sweep and keeps every point already measured."""

from __future__ import annotations

import itertools
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tritonforge.hardware import cpu_info, gpu_info
from tritonforge.perf.analyzer import MeasureSettings, PerfPoint, measure
from tritonforge.perf.gpu import GpuSampler
from tritonforge.perf.inputs import model_samples, select, unique_inputs, write_input_json


@dataclass
class SweepPlan:
    """What to measure."""

    models: list[str]
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    request_rates: list[float] = field(default_factory=list)  # when given, replaces concurrency
    inputs: str = "validation"  # validation | unique | repeated
    input_count: int = 20000  # distinct samples per point (unique: more than one point sends)

    def points(self) -> list[tuple[str, int, int | None, float | None]]:
        loads: Sequence = [(c, None) for c in self.concurrency] if not self.request_rates else [
            (None, r) for r in self.request_rates]
        return [(m, b, c, r) for m, b, (c, r) in itertools.product(self.models, self.batch_sizes, loads)]


@dataclass
class SweepResult:
    """Every measured point plus what it was measured on."""

    points: list[PerfPoint]
    settings: dict
    plan: dict
    machine: dict
    interrupted: bool = False
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0

    def to_dict(self) -> dict:
        return {"points": [p.to_dict() for p in self.points], "settings": self.settings, "plan": self.plan,
                "machine": self.machine, "interrupted": self.interrupted, "started": self.started,
                "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, d: dict) -> SweepResult:
        return cls([PerfPoint(**p) for p in d["points"]], d["settings"], d["plan"], d["machine"],
                   d.get("interrupted", False), d.get("started", 0.0), d.get("duration_s", 0.0))


def machine_info() -> dict:
    return {"cpu": cpu_info(), "gpu": gpu_info().to_dict(), "python": platform.python_version()}


def cache_counts(metrics_url: str | None) -> tuple[float, float] | None:
    """(hits, misses) of every tritonforge response cache on the server, or None if /metrics is unreachable.
    Waits first for the caches' deferred counters to reach /metrics."""
    if not metrics_url:
        return None
    import urllib.request

    from tritonforge.build.serving_graph import METRICS_LAG_S

    time.sleep(METRICS_LAG_S)

    try:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    except OSError:
        return None
    hits = misses = 0.0
    for line in text.splitlines():
        if line.startswith("tritonforge_cache_hits_total"):
            hits += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tritonforge_cache_misses_total"):
            misses += float(line.rsplit(" ", 1)[1])
    return hits, misses


def run_sweep(plan: SweepPlan, settings: MeasureSettings, repo: Path,
              on_point: Callable[[int, int, PerfPoint | None, str], None] | None = None,
              metrics_url: str | None = None) -> SweepResult:
    """Measure every point of `plan`; `on_point(done, total, point, label)` reports progress; with
    `metrics_url`, each point also gets the response cache's hit rate during it."""
    started = time.time()
    points: list[PerfPoint] = []
    todo = plan.points()
    interrupted = False
    samples = {m: model_samples(repo, m) for m in plan.models}
    with tempfile.TemporaryDirectory(prefix="tf-sweep-") as tmp:
        try:
            for i, (model, batch, conc, rate) in enumerate(todo):
                label = f"{model} b{batch} " + (f"c{conc}" if conc is not None else f"r{rate:g}/s")
                if on_point:
                    on_point(i, len(todo), None, label)
                # 'unique' inputs: a fresh slice per point, so no point sends what an earlier one sent.
                path = Path(tmp) / f"point{i}.json"
                if plan.inputs == "unique":
                    data = unique_inputs(samples[model], plan.input_count, path)
                else:
                    data = write_input_json(select(samples[model], plan.inputs, plan.input_count), path)
                before = cache_counts(metrics_url)
                with GpuSampler() as gpu:
                    point = measure(model, settings, batch, conc, rate, data)
                point.gpu = gpu.result()
                after = cache_counts(metrics_url)
                if before and after and (after[0] + after[1]) > (before[0] + before[1]):
                    point.cache_hit_rate = (after[0] - before[0]) / ((after[0] + after[1]) - (before[0] + before[1]))
                point.label = plan.inputs
                points.append(point)
                if on_point:
                    on_point(i + 1, len(todo), point, label)
        except KeyboardInterrupt:
            interrupted = True
    return SweepResult(points, asdict(settings), asdict(plan), machine_info(), interrupted, started,
                       time.time() - started)
