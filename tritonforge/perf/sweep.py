"""Sweeps: perf_analyzer over models x input series x batch sizes x concurrency (or request rate), one process
per point, with a progress bar. Ctrl-C stops the sweep and keeps every point already measured; a point that
fails is measured once more with longer windows and, if it fails again, kept as failed with perf_analyzer's
message while the sweep goes on.

Input series say what a point measures: `compute` sends inputs never sent before (a cache never answers, so
this is the model's compute), `cache` a few repeated ones (the cache answers nearly all), `validation` the
build's held-out samples as they are. By default every model gets a compute series, and a model with a
response cache a cache series too."""

from __future__ import annotations

import contextlib
import itertools
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tritonforge.hardware import cpu_info, gpu_info
from tritonforge.perf.analyzer import MeasureSettings, PerfAnalyzerError, PerfPoint, measure
from tritonforge.perf.gpu import GpuSampler
from tritonforge.perf.inputs import model_ranges, model_samples, select, unique_inputs, write_input_json
from tritonforge.perf.triton_stats import stats_of, step_figures
from tritonforge.repository.reader import Repository
from tritonforge.serving.metric_names import CACHE_HITS, CACHE_MISSES

SERIES = {"compute": "unique", "cache": "repeated", "validation": "validation"}  # series -> inputs mode
AUTO = "auto"  # compute for every model, cache too for models with a response cache


@dataclass
class SweepPlan:
    """What to measure. `series` per model: compute | cache | validation (see the module docstring)."""

    models: list[str]
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    request_rates: list[float] = field(default_factory=list)  # when given, replaces concurrency
    series: dict[str, list[str]] = field(default_factory=dict)  # model -> its series, in order
    input_count: int = 20000  # distinct samples per point (unique: more than one point sends)

    def points(self) -> list[tuple[str, str, int, int | None, float | None]]:
        loads: Sequence = (
            [(c, None) for c in self.concurrency] if not self.request_rates else [(None, r) for r in self.request_rates]
        )
        return [
            (m, label, b, c, r)
            for m in self.models
            for label in self.series.get(m, ["compute"])
            for b, (c, r) in itertools.product(self.batch_sizes, loads)
        ]


def plan_series(repo: Path, models: list[str], chosen: str = AUTO) -> dict[str, list[str]]:
    """Each model's series: the one chosen for all, or (auto) compute, plus cache where the model caches."""
    if chosen != AUTO:
        return {m: [chosen] for m in models}
    from tritonforge.repository.reader import Repository

    repository = Repository(repo)
    return {m: ["compute", "cache"] if repository.caches(m) else ["compute"] for m in models}


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
        return {
            "points": [p.to_dict() for p in self.points],
            "settings": self.settings,
            "plan": self.plan,
            "machine": self.machine,
            "interrupted": self.interrupted,
            "started": self.started,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SweepResult:
        return cls(
            [PerfPoint(**p) for p in d["points"]],
            d["settings"],
            d["plan"],
            d["machine"],
            d.get("interrupted", False),
            d.get("started", 0.0),
            d.get("duration_s", 0.0),
        )


def machine_info() -> dict:
    return {"cpu": cpu_info(), "gpu": gpu_info().to_dict(), "python": platform.python_version()}


def cache_counts(metrics_url: str | None) -> tuple[float, float] | None:
    """(hits, misses) of every tritonforge response cache on the server, or None if /metrics is unreachable.
    Waits first for the caches' deferred counters to reach /metrics."""
    if not metrics_url:
        return None
    import urllib.request

    from tritonforge.serving.metric_names import METRICS_LAG_S

    time.sleep(METRICS_LAG_S)

    try:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    except OSError:
        return None
    hits = misses = 0.0
    for line in text.splitlines():
        if line.startswith(CACHE_HITS):
            hits += float(line.rsplit(" ", 1)[1])
        elif line.startswith(CACHE_MISSES):
            misses += float(line.rsplit(" ", 1)[1])
    return hits, misses


def _ensemble_steps(repository: Repository, model: str) -> list[str]:
    """The models an ensemble runs, in order ([] for any other model)."""
    config = repository.config(model)
    return [step.model_name for step in config.ensemble_scheduling.step] if config.platform == "ensemble" else []


@contextlib.contextmanager
def _step_statistics(url: str, steps: list[str]) -> Iterator[dict]:
    """Collects each ensemble step's figures over the block into the yielded dict (Triton's statistics)."""
    figures: dict = {}
    if not steps:
        yield figures
        return
    import tritonclient.grpc as grpcclient

    admin = grpcclient.InferenceServerClient(url)
    try:
        before = stats_of(admin, steps)
        yield figures
        figures.update(step_figures(before, stats_of(admin, steps)))
    finally:
        admin.close()


def _measure_point(
    model: str,
    settings: MeasureSettings,
    batch: int,
    conc: int | None,
    rate: float | None,
    data,
    metrics_url: str | None,
    steps: list[str] | None = None,
) -> PerfPoint:
    """One point; a failure is measured once more with windows twice as long, then kept as a failed point. For
    an ensemble (`steps`), the point carries each step's figures."""
    from dataclasses import replace

    error = ""
    for attempt_settings in (settings, replace(settings, measurement_interval_ms=2 * settings.measurement_interval_ms)):
        before = cache_counts(metrics_url)
        try:
            with GpuSampler() as gpu, _step_statistics(settings.url, steps or []) as composing:
                point = measure(model, attempt_settings, batch, conc, rate, data)
        except PerfAnalyzerError as e:
            error = str(e)
            continue
        point.gpu = gpu.result()
        point.composing = composing
        after = cache_counts(metrics_url)
        if before and after and (after[0] + after[1]) > (before[0] + before[1]):
            point.cache_hit_rate = (after[0] - before[0]) / ((after[0] + after[1]) - (before[0] + before[1]))
        if attempt_settings is not settings:
            point.note = (point.note + "; " if point.note else "") + "failed once; measured with longer windows"
        return point
    return PerfPoint.failed(model, batch, conc, rate, error)


def run_sweep(
    plan: SweepPlan,
    settings: MeasureSettings,
    repo: Path,
    on_point: Callable[[int, int, PerfPoint | None, str], None] | None = None,
    metrics_url: str | None = None,
) -> SweepResult:
    """Measure every point of `plan`; `on_point(done, total, point, label)` reports progress; with
    `metrics_url`, each point also gets the response cache's hit rate during it."""
    started = time.time()
    points: list[PerfPoint] = []
    todo = plan.points()
    interrupted = False
    samples = {m: model_samples(repo, m) for m in plan.models}
    steps = {m: _ensemble_steps(Repository(repo), m) for m in plan.models}
    ranges = {m: model_ranges(repo, m) for m in plan.models}
    with tempfile.TemporaryDirectory(prefix="tf-sweep-") as tmp:
        try:
            for i, (model, series, batch, conc, rate) in enumerate(todo):
                label = f"{model} {series} b{batch} " + (f"c{conc}" if conc is not None else f"r{rate:g}/s")
                if on_point:
                    on_point(i, len(todo), None, label)
                # 'unique' inputs: a fresh slice per point and attempt, so no point sends what an earlier one sent.
                path = Path(tmp) / f"point{i}.json"
                mode = SERIES[series]
                if mode == "unique":
                    data = unique_inputs(samples[model], plan.input_count, path, ranges[model])
                else:
                    data = write_input_json(select(samples[model], mode, plan.input_count), path)
                point = _measure_point(model, settings, batch, conc, rate, data, metrics_url, steps[model])
                point.label = series
                points.append(point)
                if on_point:
                    on_point(i + 1, len(todo), point, label)
        except KeyboardInterrupt:
            interrupted = True
    return SweepResult(points, asdict(settings), asdict(plan), machine_info(), interrupted, started, time.time() - started)
