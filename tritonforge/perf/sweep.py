"""Sweeps: perf_analyzer over models x input series x batch sizes x concurrency (or request rate), one process
per point, with a progress bar. Ctrl-C stops the sweep and keeps every point already measured; a point that
fails is measured once more with longer windows and, if it fails again, kept as failed with perf_analyzer's
message while the sweep goes on.

Input series say what a point measures: `compute` sends inputs never sent before (a cache never answers, so
this is the model's compute), `cache` a few repeated ones (the cache answers nearly all), `validation` the
build's held-out samples as they are. By default every model gets a compute series, and a model with a
response cache a cache series too.

Input files are perf_analyzer JSON with numbers in base64 (about 1.33 bytes per byte). A compute point's file
holds as many requests as the point may send (`planned_requests`: its windows at the throughput the earlier
points of its series reach, or FIRST_POINT_REQUESTS for the first), within `max_input_bytes`; perf_analyzer
cycles through the file, so a point that sends more repeats inputs and a cache answers the repeats. Every
compute point's cache hits are counted (tritonforge's caches on /metrics, Triton's in its statistics): a point
with any is void and measured again with fresh inputs, twice what it sent; a point that still has hits, or that
would need a file over the bound, is kept as void with the reason, never with its numbers (`judge_compute`)."""

from __future__ import annotations

import contextlib
import itertools
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from tritonforge.hardware import cpu_info, gpu_info
from tritonforge.perf.analyzer import MeasureSettings, PerfAnalyzerError, PerfPoint, measure
from tritonforge.perf.cpu import ProcessSampler
from tritonforge.perf.gpu import GpuSampler
from tritonforge.perf.inputs import (
    DEFAULT_MAX_INPUT_BYTES,
    REPEATED_SAMPLES,
    Sample,
    UniqueInputs,
    check_size,
    file_requests,
    fitting_count,
    model_ranges,
    model_samples,
    select,
    write_input_json,
)
from tritonforge.perf.triton_stats import ModelStats, figures, stats_of
from tritonforge.repository.reader import Repository
from tritonforge.serving.metric_names import CACHE_HITS, CACHE_MISSES, SHADOW_DROPPED, SHADOW_ERRORS, SHADOW_SAMPLES
from tritonforge.serving.settings import PublicSettings

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
    # requests per input file; None: derived per point (compute: from the planned requests; validation: every
    # stored sample; cache: REPEATED_SAMPLES)
    input_count: int | None = None
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES  # the bound on each input file

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


class ServerCounters(NamedTuple):
    """tritonforge's counters on the server's /metrics, summed over the models measured: their response caches'
    hits and misses, and the shadow's samples compared with FP32, dropped and failed (serving.shadow)."""

    hits: float
    misses: float
    shadow_compared: float
    shadow_dropped: float
    shadow_errors: float

    def since(self, before: ServerCounters) -> ServerCounters:
        """What was counted between `before` and this snapshot."""
        return ServerCounters(*(a - b for a, b in zip(self, before, strict=True)))


_COUNTED = {
    CACHE_HITS: "hits",
    CACHE_MISSES: "misses",
    SHADOW_SAMPLES: "shadow_compared",
    SHADOW_DROPPED: "shadow_dropped",
    SHADOW_ERRORS: "shadow_errors",
}


def server_counters(metrics_url: str | None, models: Sequence[str]) -> ServerCounters | None:
    """tritonforge's counters of `models` on the server now, or None if /metrics is unreachable. Waits first for
    the models' deferred counters to reach /metrics."""
    if not metrics_url:
        return None
    import urllib.request

    from tritonforge.serving.metric_names import METRICS_LAG_S

    time.sleep(METRICS_LAG_S)

    try:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    except OSError:
        return None
    return counters_in(text, models)


def counters_in(text: str, models: Sequence[str]) -> ServerCounters:
    """tritonforge's counters of `models` (their `model` label) in a Prometheus text exposition, each summed over
    its other labels: another model served beside them never counts."""
    totals = dict.fromkeys(_COUNTED.values(), 0.0)
    wanted = {f'model="{m}"' for m in models}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        name = name.split(" ", 1)[0]
        labels = rest.rsplit("}", 1)[0].split(",")
        if name in _COUNTED and wanted.intersection(labels):
            totals[_COUNTED[name]] += float(line.rsplit(" ", 1)[1])
    return ServerCounters(**totals)


def ensemble_steps(repository: Repository, model: str) -> list[str]:
    """The models an ensemble runs, in order ([] for any other model)."""
    config = repository.config(model)
    return [step.model_name for step in config.ensemble_scheduling.step] if config.platform == "ensemble" else []


def _tritonforge_cache(repository: Repository, models: list[str]) -> bool:
    """Whether any of `models` answers from a tritonforge response cache (counted on /metrics only)."""
    for model in models:
        settings = repository.settings(model)
        if isinstance(settings, PublicSettings) and settings.cache:
            return True
    return False


def _shadowed(repository: Repository, model: str) -> bool:
    """Whether `model` compares a share of its answers with FP32 (serving.shadow; counted on /metrics only)."""
    settings = repository.settings(model)
    return isinstance(settings, PublicSettings) and settings.shadow is not None


@contextlib.contextmanager
def _statistics(url: str, models: list[str]) -> Iterator[dict[str, ModelStats]]:
    """Each model's Triton statistics over the block, as differences, into the yielded dict (left empty where
    the server does not answer them)."""
    figures: dict[str, ModelStats] = {}
    import tritonclient.grpc as grpcclient

    admin = grpcclient.InferenceServerClient(url)
    try:
        try:
            before = stats_of(admin, models)
        except Exception:  # noqa: BLE001 - statistics are extra; the measurement goes on without them
            before = None
        yield figures
        if before is not None:
            with contextlib.suppress(Exception):
                figures.update({m: after - before[m] for m, after in stats_of(admin, models).items()})
    finally:
        admin.close()


# perf_analyzer sends between and around its windows too: inputs for this many times the windows' requests.
REQUEST_MARGIN = 1.2
# Requests in the first compute point's file of a series (no throughput known yet), within the byte bound.
FIRST_POINT_REQUESTS = 20000
# Fewest requests in a compute file when the byte bound allows them (a cheap file; very slow models).
MIN_POINT_REQUESTS = 1000


def planned_requests(
    settings: MeasureSettings, batch: int, concurrency: int | None, rate: float | None, earlier: list[PerfPoint]
) -> int | None:
    """How many batch-1 inputs one point may consume (perf_analyzer takes `batch` of them per request): all its
    windows (max_trials of them) at the throughput expected there, times REQUEST_MARGIN. The throughput
    expected: the request rate's; or the highest an earlier point of the series (same model, series and batch)
    reached, scaled by the concurrency (throughput grows at most in proportion to the requests in flight); None
    when there is none (the first point)."""
    if settings.measurement_mode == "count_windows":
        inputs = settings.max_trials * settings.measurement_request_count * batch + (concurrency or 1) * batch
        return int(REQUEST_MARGIN * inputs)
    window_s = settings.max_trials * settings.measurement_interval_ms / 1000
    if rate is not None:
        expected = rate * batch
    else:
        scaled = [
            p.throughput * (concurrency or 1) / p.concurrency for p in earlier if p.ok and p.concurrency and p.throughput > 0
        ]
        if not scaled:
            return None
        expected = max(scaled)
    return int(REQUEST_MARGIN * expected * window_s) + 1


@dataclass(frozen=True)
class Judgement:
    """What to do with a compute point: keep it, measure it again with `count` fresh inputs, or void it."""

    action: str  # keep | rerun | void
    reason: str = ""
    count: int = 0


def judge_compute(hits: int | None, requests: int | None, inputs_sent: int, count: int, max_count: int, again: bool) -> Judgement:
    """A compute point must show no cache hit: it measures the model. `hits` among `requests` (None: not
    counted), `inputs_sent` batch-1 inputs taken from a file of `count`, a file of at most `max_count` allowed,
    `again` when this was already the re-run. Hits: measure again with fresh inputs, twice what it sent (it
    went round its file) or twice the file, unless that is the re-run or the bound cannot hold what it sent."""
    if not hits:
        return Judgement("keep")
    share = f"{hits} of {requests} requests" if requests else f"{hits} requests"
    wrapped = inputs_sent > count
    cause = (
        f"it sent {inputs_sent} inputs from a file of {count}, so perf_analyzer repeated them"
        if wrapped
        else "its inputs were unique: another client, or an input sent before"
    )
    reason = f"{share} answered by a cache ({cause})"
    if again:
        return Judgement("void", f"{reason}, again after a re-run with fresh inputs")
    if wrapped and inputs_sent >= max_count:
        return Judgement(
            "void",
            f"{reason}; --max-input-bytes holds {max_count} requests, fewer than it sends: raise it, or shorten the "
            "windows (--measurement-interval, --max-trials)",
        )
    return Judgement("rerun", reason, min(max_count, max(2 * count, 2 * inputs_sent)))


@dataclass
class _Context:
    """What measuring one point needs beside the point itself."""

    settings: MeasureSettings
    metrics_url: str | None
    server_pid: int | None
    steps: list[str]
    tritonforge_cache: bool  # the model (or a step) answers from a tritonforge cache: hits only on /metrics
    shadowed: bool = False  # the model compares sampled answers with FP32 (serving.shadow): counted on /metrics


def _measure_point(model: str, ctx: _Context, batch: int, conc: int | None, rate: float | None, data) -> PerfPoint:
    """One point; a failure is measured once more with windows twice as long, then kept as a failed point. The
    point carries its cache hits and requests, the server's CPU (local server) and GPU use, and for an ensemble
    (`steps`) each step's figures."""
    from dataclasses import replace

    settings, error = ctx.settings, ""
    for attempt_settings in (settings, replace(settings, measurement_interval_ms=2 * settings.measurement_interval_ms)):
        if attempt_settings is not settings and isinstance(data, UniqueInputs):
            data = data.again()  # the failed try sent some of its inputs: never send them again
        before = server_counters(ctx.metrics_url, [model, *ctx.steps])
        try:
            with (
                GpuSampler() as gpu,
                ProcessSampler(ctx.server_pid) as cpu,
                _statistics(settings.url, [model, *ctx.steps]) as stats,
            ):
                point = measure(model, attempt_settings, batch, conc, rate, data)
        except PerfAnalyzerError as e:
            error = str(e)
            continue
        after = server_counters(ctx.metrics_url, [model, *ctx.steps])
        point.gpu = gpu.result()
        if ctx.steps and stats:
            point.composing = {m: figures(stats[m]) for m in ctx.steps}
        if model in stats:
            point.requests = stats[model].success
        tf_hits = tf_total = None
        if before and after:
            counted = after.since(before)
            tf_hits, tf_total = counted.hits, counted.hits + counted.misses
            if ctx.shadowed:
                point.shadow = {
                    "compared": int(counted.shadow_compared),
                    "dropped": int(counted.shadow_dropped),
                    "errors": int(counted.shadow_errors),
                }
        if not (ctx.tritonforge_cache and tf_hits is None) and (stats or ctx.tritonforge_cache):
            point.cache_hits = int(round((tf_hits or 0) + sum(s.cache_hits for s in stats.values())))
        if point.cache_hits is not None and point.requests:
            point.cache_hit_rate = point.cache_hits / point.requests
        elif tf_hits is not None and tf_total:
            point.cache_hit_rate = tf_hits / tf_total
        point.cpu = cpu.result(point.requests * batch if point.requests else None)
        if isinstance(data, UniqueInputs):
            point.inputs = data.last_count
        if attempt_settings is not settings:
            point.add_note("failed once; measured with longer windows")
        return point
    return PerfPoint.failed(model, batch, conc, rate, error)


def _compute_point(
    model: str,
    ctx: _Context,
    batch: int,
    conc: int | None,
    rate: float | None,
    samples: list[Sample],
    ranges: dict,
    path: Path,
    count: int,
    max_count: int,
    max_bytes: int,
) -> PerfPoint:
    """A compute point: unique inputs; a point with cache hits is measured again with fresh ones, and kept as
    void if it has hits again (see `judge_compute`)."""
    voided = ""
    for again in (False, True):
        data = UniqueInputs(
            samples, count, path.with_name(f"{path.stem}.{int(again)}{path.suffix}"), ranges, max_count, max_bytes
        )
        point = _measure_point(model, ctx, batch, conc, rate, data)
        if not point.ok:
            return point
        sent = (point.requests or 0) * batch
        judgement = judge_compute(point.cache_hits, point.requests, sent, point.inputs or count, max_count, again)
        if judgement.action == "void":
            return point.voided(judgement.reason)
        if judgement.action == "keep":
            if voided:
                point.add_note(f"voided once ({voided}); measured again with {count} fresh inputs")
            elif point.cache_hits is None:
                point.add_note("cache hits not counted (no /metrics: give --metrics-url)")
            return point
        voided, count = judgement.reason, judgement.count
    raise AssertionError("unreachable")


def _input_count(plan: SweepPlan, mode: str, samples: list[Sample]) -> int:
    """Requests in a validation or cache file: as asked, else every stored sample or the few repeated ones."""
    if plan.input_count:
        return plan.input_count
    return len(samples) if mode == "validation" else REPEATED_SAMPLES


def check_inputs(plan: SweepPlan, repo: Path) -> None:
    """Refuse an --input-count whose files would pass --max-input-bytes for any model, before measuring."""
    if not plan.input_count:
        return
    for model in plan.models:
        samples = model_samples(repo, model)
        for series in plan.series.get(model, ["compute"]):
            mode = SERIES[series]
            count = file_requests(samples, mode, plan.input_count)
            check_size(samples, count, plan.max_input_bytes, f"model '{model}' ({series})")


def run_sweep(
    plan: SweepPlan,
    settings: MeasureSettings,
    repo: Path,
    on_point: Callable[[int, int, PerfPoint | None, str], None] | None = None,
    metrics_url: str | None = None,
    server_pid: int | None = None,
) -> SweepResult:
    """Measure every point of `plan`; `on_point(done, total, point, label)` reports progress; with
    `metrics_url`, each point also counts tritonforge's cache hits and the shadow's samples during it; with `server_pid` (the local
    server), the server's CPU time and memory."""
    started = time.time()
    points: list[PerfPoint] = []
    todo = plan.points()
    interrupted = False
    repository = Repository(repo)
    samples = {m: model_samples(repo, m) for m in plan.models}
    steps = {m: ensemble_steps(repository, m) for m in plan.models}
    ranges = {m: model_ranges(repo, m) for m in plan.models}
    max_counts = {m: fitting_count(samples[m], plan.max_input_bytes) for m in plan.models}
    contexts = {
        m: _Context(
            settings,
            metrics_url,
            server_pid,
            steps[m],
            _tritonforge_cache(repository, [m, *steps[m]]),
            _shadowed(repository, m),
        )
        for m in plan.models
    }
    with tempfile.TemporaryDirectory(prefix="tf-sweep-") as tmp:
        try:
            for i, (model, series, batch, conc, rate) in enumerate(todo):
                label = f"{model} {series} b{batch} " + (f"c{conc}" if conc is not None else f"r{rate:g}/s")
                if on_point:
                    on_point(i, len(todo), None, label)
                path = Path(tmp) / f"point{i}.json"
                mode = SERIES[series]
                if mode == "unique":
                    # a fresh slice per point and attempt, so no point sends what an earlier one sent
                    earlier = [p for p in points if (p.model, p.label, p.batch_size) == (model, series, batch)]
                    planned = planned_requests(settings, batch, conc, rate, earlier)
                    count = plan.input_count or max(MIN_POINT_REQUESTS, planned or FIRST_POINT_REQUESTS)
                    count = min(count, max_counts[model])
                    point = _compute_point(
                        model,
                        contexts[model],
                        batch,
                        conc,
                        rate,
                        samples[model],
                        ranges[model],
                        path,
                        count,
                        max_counts[model],
                        plan.max_input_bytes,
                    )
                else:
                    chosen = select(samples[model], mode, _input_count(plan, mode, samples[model]))
                    data = write_input_json(chosen, path, max_bytes=plan.max_input_bytes)
                    point = _measure_point(model, contexts[model], batch, conc, rate, data)
                    if point.ok:
                        point.inputs = len(chosen)
                point.label = series
                points.append(point)
                if on_point:
                    on_point(i + 1, len(todo), point, label)
        except KeyboardInterrupt:
            interrupted = True
    return SweepResult(points, asdict(settings), asdict(plan), machine_info(), interrupted, started, time.time() - started)
