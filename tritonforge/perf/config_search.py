"""Configuration search in the spirit of Triton Model Analyzer's quick search.

For one build, try dynamic batching settings (max queue delay, preferred batch sizes, or no batching) and
instance counts on its compute models, reloading them through the repository API (explicit model control)
with each candidate config, measure the public model with perf_analyzer at one concurrency on unique inputs
(so no cache hit hides the compute), and pick the best throughput whose p95 stays within the latency budget.
With no concurrency given, the load is searched as well, as Model Analyzer does, since "the best throughput
within the budget" is a load as much as a config: the spec's settings are measured at 1, 2, 4, ... concurrent
requests until p95 leaves the budget, the grid runs at the highest load they kept within it, and the
HIGHER_LOAD_TOP best candidates are then tried at twice that load, where the spec's settings broke the budget.
The public model carries the serving logic and, on a server without native backends, the compute: its
instance count is how many batches are in flight at once (each instance runs one at a time), and its ONNX
Runtime threads share the cores with the other instances.
The pick is then measured against the spec's own settings in CONFIRM_PAIRS fresh side-by-side pairs, both at
the pick's load; it wins a pair if it keeps the budget and the spec's settings either break it or serve less.
Only if it wins every pair is it written back into the spec (comments kept) and the repository rebuilt, so
configs come from the spec and nowhere else.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from google.protobuf import json_format

from tritonforge.perf.analyzer import InputData, MeasureSettings, PerfPoint, measure
from tritonforge.perf.inputs import UniqueInputs, model_ranges, model_samples
from tritonforge.perf.triton_stats import stats_of
from tritonforge.repository.config import read_config
from tritonforge.repository.reader import Repository
from tritonforge.serving.settings import PARAMETER, PublicSettings, RunnerSettings, dumps, loads
from tritonforge.spec import BuildSpec, load_spec


@dataclass(frozen=True)
class Candidate:
    """Serving settings for the public model and the native rungs; max_queue_delay_us None means: no dynamic
    batching. threads is ONNX Runtime's intra-op thread count per instance (0: all cores)."""

    max_queue_delay_us: int | None
    preferred_batch_sizes: tuple[int, ...]
    instance_count: int
    threads: int = 0

    @property
    def batching(self) -> bool:
        return self.max_queue_delay_us is not None

    def describe(self) -> str:
        inst = f"{self.instance_count} instance(s) x {self.threads or 'all'} thread(s)"
        if not self.batching:
            return f"no dynamic batching, {inst}"
        pref = list(self.preferred_batch_sizes) or "none"
        return f"delay {self.max_queue_delay_us} us, preferred {pref}, {inst}"


# What Triton does with no dynamic_batching section: every request executed alone.
TRITON_DEFAULT = Candidate(None, (), 1, 0)
# Inputs are unique, so a trial should see no cache hit at all; this leaves room for nothing but rounding.
MAX_HIT_RATE = 0.01
# Unique inputs written for a trial at least; more once a trial has sent more (perf_analyzer cycles through
# its input data, and a repeat is a cache hit).
MIN_UNIQUE_INPUTS = 5000
# The highest concurrency the automatic load search tries.
MAX_AUTO_CONCURRENCY = 64
# How many of the grid's best are tried at twice the load the spec's settings keep within the budget.
HIGHER_LOAD_TOP = 3
# After the grid, the pick and the default are measured again in adjacent pairs, the order alternating
# (pick, default), (default, pick), (pick, default), so a drift of the machine's speed during the run favours
# neither. The pick is confirmed only if it beats the default in every pair: settings that are truly equal
# pass with probability 1/2**CONFIRM_PAIRS.
CONFIRM_PAIRS = 3


@dataclass
class Trial:
    candidate: Candidate
    point: PerfPoint | None
    error: str = ""
    default: bool = False
    confirmation: bool = False  # a measurement of the default or the pick in the confirmation pairs
    probe: bool = False  # a measurement of the default while finding the concurrency; never picked
    concurrency: int = 0
    requests: int = 0  # answered by the public model during the measurement (Triton statistics)
    computed: int = 0  # of those, computed by the router (the rest were cache hits)

    @property
    def hit_rate(self) -> float:
        return max(self.requests - self.computed, 0) / self.requests if self.requests else 0.0

    def fits(self, budget_ms: float) -> bool:
        """Measured, within the budget, and a measurement of compute: a trial the cache answered (more than
        MAX_HIT_RATE of its requests) says nothing about the settings and can never be picked."""
        return self.point is not None and self.point.p95_us / 1000 <= budget_ms and self.hit_rate <= MAX_HIT_RATE


@dataclass
class SearchResult:
    model: str
    concurrency: int
    budget_ms: float
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None

    confirmed: bool | None = None  # the pick beat the default in every confirmation pair

    @property
    def default(self) -> Trial:
        return next(t for t in self.trials if t.default and not t.confirmation and not t.probe)

    @property
    def probes(self) -> list[Trial]:
        return [t for t in self.trials if t.probe]

    def throughputs(self, candidate: Candidate) -> list[float]:
        return [t.point.throughput for t in self.trials if t.candidate == candidate and t.point is not None and not t.probe]

    def pairs(self) -> list[tuple[Trial, Trial]]:
        """(pick, default) in each confirmation pair."""
        confirmations = [t for t in self.trials if t.confirmation]
        pairs = [confirmations[k : k + 2] for k in range(0, len(confirmations) - 1, 2)]
        return [(next(t for t in pair if not t.default), next(t for t in pair if t.default)) for pair in pairs]

    def pair_ratios(self) -> list[float | None]:
        """Pick / default throughput in each confirmation pair; None where either was not measured."""
        ratios = []
        for pick, base in self.pairs():
            measured = pick.point is not None and base.point is not None and base.point.throughput > 0
            ratios.append(pick.point.throughput / base.point.throughput if measured else None)  # type: ignore[union-attr]
        return ratios

    def pick_wins(self, pick: Trial, base: Trial) -> bool:
        """The pick kept the budget, uncached, and the default, measured and uncached at the same load, either
        broke the budget or served less."""
        if not pick.fits(self.budget_ms) or base.point is None or base.hit_rate > MAX_HIT_RATE:
            return False
        return base.point.p95_us / 1000 > self.budget_ms or pick.point.throughput > base.point.throughput  # type: ignore[union-attr]

    def pick_confirmed(self) -> bool:
        """The pick won every confirmation pair."""
        pairs = self.pairs()
        return len(pairs) == CONFIRM_PAIRS and all(self.pick_wins(p, b) for p, b in pairs)

    def to_dict(self) -> dict:
        def trial(t: Trial) -> dict:
            return {
                "candidate": asdict(t.candidate),
                "describe": t.candidate.describe(),
                "default": t.default,
                "confirmation": t.confirmation,
                "probe": t.probe,
                "concurrency": t.concurrency,
                "error": t.error,
                "requests": t.requests,
                "computed": t.computed,
                "hit_rate": t.hit_rate,
                "point": t.point.to_dict() if t.point else None,
            }

        return {
            "model": self.model,
            "concurrency": self.concurrency,
            "budget_ms": self.budget_ms,
            "trials": [trial(t) for t in self.trials],
            "best": trial(self.best) if self.best else None,
            "pair_ratios": self.pair_ratios(),
            "confirmed": self.confirmed,
        }


def default_candidate(spec: BuildSpec) -> Candidate:
    """The settings the spec has now."""
    s = spec.serving
    if not s.dynamic_batching.enabled:
        return Candidate(None, (), s.instance_count, s.intra_op_threads)
    return Candidate(
        s.dynamic_batching.max_queue_delay_us,
        tuple(s.dynamic_batching.preferred_batch_sizes),
        s.instance_count,
        s.intra_op_threads,
    )


def grid(
    max_batch: int, delays=(0, 1000, 4000), instances=(1, 2), with_preferred: bool = True, cores: int | None = None
) -> list[Candidate]:
    """The candidates: queue delay x (no preferred sizes | powers of two up to max batch) x instances, each
    instance count paired with cores / instances ONNX Runtime threads (so instances do not oversubscribe)."""
    import os

    cores = cores or os.cpu_count() or 1
    preferred: list[tuple[int, ...]] = [()]
    if with_preferred:
        preferred.append(tuple(b for b in (4, 8, 16, 32, 64) if b <= max_batch))
    threads = {i: 0 if i == 1 else max(1, cores // i) for i in instances}
    return [TRITON_DEFAULT] + [Candidate(d, p, i, threads[i]) for d in delays for p in preferred for i in instances]


def tuned_models(repo: Path, public: str) -> list[str]:
    """The models whose batching and instances a candidate sets: the native rungs (which the local CPU server
    cannot load) and the public model, which batches, carries the logic and runs the in-process rungs."""
    repository = Repository(repo)
    return repository.rungs(public) + [public]


def apply(candidate: Candidate, repo: Path, models: list[str], admin) -> None:
    """Reload each model with the candidate's settings as a config override (repository config untouched)."""
    for name in models:
        cfg = read_config(repo / name / "config.pbtxt")
        cfg.ClearField("dynamic_batching")
        if candidate.batching:
            cfg.dynamic_batching.max_queue_delay_microseconds = candidate.max_queue_delay_us
            cfg.dynamic_batching.preferred_batch_size.extend(candidate.preferred_batch_sizes)
        for group in cfg.instance_group:
            group.count = candidate.instance_count
        if PARAMETER in cfg.parameters:
            settings = loads(cfg.parameters[PARAMETER].string_value, name)
            if isinstance(settings, PublicSettings | RunnerSettings):  # an ensemble's front runs no model
                cfg.parameters[PARAMETER].string_value = dumps(replace(settings, intra_op_threads=candidate.threads))
        _load(admin, name, json_format.MessageToJson(cfg))


def _load(admin, name: str, config: str | None = None) -> None:
    """(Re)load a model; a backend this server lacks (onnxruntime, tensorrt locally) is not an error here."""
    try:
        admin.load_model(name, config=config)
    except Exception as e:
        if "unable to find backend library" not in str(e):
            raise


def restore(admin, repo: Path, models: list[str]) -> None:
    """Reload models with the repository's own configs (undo `apply`). The config is passed explicitly: a plain
    reload of files that did not change keeps the last override (Triton 2.51)."""
    for name in models:
        _load(admin, name, json_format.MessageToJson(read_config(repo / name / "config.pbtxt")))


def search(
    spec_path: Path,
    repo: Path,
    url: str,
    concurrency: int | None = 16,
    budget_ms: float = 50.0,
    candidates: list[Candidate] | None = None,
    settings: MeasureSettings | None = None,
    on_trial=None,
    metrics_url: str | None = None,
) -> SearchResult:
    """Measure the default and every candidate in one run; `best` is the fastest within the budget. concurrency
    None: the grid runs at the highest of 1, 2, 4, ... MAX_AUTO_CONCURRENCY at which the default keeps p95 within
    the budget (1 if none does), and its HIGHER_LOAD_TOP best (within the budget) run again at the next load.
    With `metrics_url`, each trial's cache hits are counted (a trial the cache answered is never picked)."""
    import tritonclient.grpc as grpcclient

    spec = load_spec(spec_path)
    settings = settings or MeasureSettings(url=url, measurement_interval_ms=2000, max_trials=5)
    models = tuned_models(repo, spec.name)
    default = default_candidate(spec)
    todo = [default] + [c for c in (candidates or grid(spec.max_batch_size)) if c != default]
    auto = concurrency is None
    result = SearchResult(spec.name, concurrency or 0, budget_ms)
    admin = grpcclient.InferenceServerClient(url)
    samples, ranges = model_samples(repo, spec.name), model_ranges(repo, spec.name)
    total = len(todo)
    with tempfile.TemporaryDirectory(prefix="tf-search-") as tmp:
        pool_size = MIN_UNIQUE_INPUTS

        def run(
            candidate: Candidate, is_default: bool = False, confirmation: bool = False, load: int = 0, probe: bool = False
        ) -> Trial:
            nonlocal pool_size
            k = len(result.trials)
            if on_trial:
                on_trial(k, max(total, k + 1), candidate)
            for attempt in range(2):
                # Unique inputs of its own per trial: no trial may hit what an earlier one cached.
                size = pool_size
                data = UniqueInputs(samples, size, Path(tmp) / f"trial{k}.{attempt}.json", ranges)
                trial = _trial(
                    candidate,
                    is_default,
                    confirmation,
                    repo,
                    models,
                    admin,
                    spec.name,
                    settings,
                    load or result.concurrency,
                    data,
                    metrics_url,
                )
                # Twice the most requests any trial sent, so the next one, even at twice the load, stays unique.
                pool_size = max(size, 2 * trial.requests)
                if trial.requests <= size:
                    break
                # perf_analyzer went round the slice again: its hits say nothing about the settings; once more
            trial.probe = probe
            result.trials.append(trial)
            return trial

        try:
            higher = 0
            if auto:
                result.concurrency = 1
                load = 1
                while load <= MAX_AUTO_CONCURRENCY and run(default, True, load=load, probe=True).fits(budget_ms):
                    result.concurrency = load
                    load *= 2
                # twice the load, if the spec's settings broke the budget there (not where they failed at 1)
                higher = load if load == 2 * result.concurrency <= MAX_AUTO_CONCURRENCY else 0
                total = len(result.trials) + len(todo) + (HIGHER_LOAD_TOP if higher else 0)
            for i, candidate in enumerate(todo):
                run(candidate, i == 0)
            if higher:
                ranked = sorted(
                    (t for t in result.trials if not t.probe and t.candidate != default and t.fits(budget_ms)),
                    key=lambda t: t.point.throughput if t.point else 0.0,
                    reverse=True,
                )
                for trial in ranked[:HIGHER_LOAD_TOP]:
                    run(trial.candidate, load=higher)
            best = _best([t for t in result.trials if not t.probe], budget_ms)
            if best is not None and best.candidate != default:
                # The grid's best is the maximum of many noisy readings; only fresh pairs can confirm it.
                total = len(result.trials) + 2 * CONFIRM_PAIRS
                order = [(best.candidate, False), (default, True)]
                for j in range(2 * CONFIRM_PAIRS):
                    candidate, is_default = order[(j + j // 2) % 2]  # p d, d p, p d, ...
                    run(candidate, is_default, confirmation=True, load=best.concurrency)
        finally:
            restore(admin, repo, models)
            admin.close()
    result.best = _best([t for t in result.trials if not t.confirmation and not t.probe], budget_ms)
    if result.best is not None and result.best.candidate != default:
        result.confirmed = result.pick_confirmed()
    return result


def _trial(
    candidate: Candidate,
    default: bool,
    confirmation: bool,
    repo: Path,
    models: list[str],
    admin,
    public: str,
    settings: MeasureSettings,
    concurrency: int,
    data: InputData,
    metrics_url: str | None,
) -> Trial:
    from tritonforge.perf.sweep import server_counters

    try:
        apply(candidate, repo, models, admin)
        before, hits_before = stats_of(admin, [public])[public], server_counters(metrics_url, [public, *models])
        point = measure(public, settings, 1, concurrency, None, data)
        requests = (stats_of(admin, [public])[public] - before).inference_count
        hits_after = server_counters(metrics_url, [public, *models])
        hits = hits_after.hits - hits_before.hits if hits_before and hits_after else 0
        return Trial(
            candidate,
            point,
            default=default,
            confirmation=confirmation,
            requests=requests,
            computed=requests - int(hits),
            concurrency=concurrency,
        )
    except Exception as e:
        return Trial(
            candidate,
            None,
            f"{type(e).__name__}: {str(e)[-300:]}",
            default=default,
            confirmation=confirmation,
            concurrency=concurrency,
        )


def _best(trials: list[Trial], budget_ms: float) -> Trial | None:
    fitting = [t for t in trials if t.fits(budget_ms)]
    return max(fitting, key=lambda t: t.point.throughput if t.point else 0.0) if fitting else None


def write_back(spec_path: Path, candidate: Candidate) -> None:
    """Put the chosen settings into the spec's serving section, keeping the file's comments and layout."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(Path(spec_path).read_text())
    serving = data.setdefault("serving", {})
    batching = serving.setdefault("dynamic_batching", {})
    batching["enabled"] = candidate.batching
    if candidate.batching:
        batching["max_queue_delay_us"] = candidate.max_queue_delay_us
        batching["preferred_batch_sizes"] = list(candidate.preferred_batch_sizes)
    serving["instance_count"] = candidate.instance_count
    serving["intra_op_threads"] = candidate.threads
    with open(spec_path, "w") as f:
        yaml.dump(data, f)
