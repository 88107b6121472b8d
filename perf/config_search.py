"""Configuration search in the spirit of Triton Model Analyzer's quick search.

For one build, try dynamic batching settings (max queue delay, preferred batch sizes, or no batching) and
instance counts on its compute models, reloading them through the repository API (explicit model control)
with each candidate config, measure the public model with perf_analyzer at one concurrency on unique inputs
(so no cache hit hides the compute), and pick the best throughput whose p95 stays within the latency budget.
The pick is written back into the spec (comments kept) and the repository rebuilt, so configs come from the
spec and nowhere else.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from google.protobuf import json_format

from builder.repository.config import read_config
from builder.spec import BuildSpec, load_spec
from perf.analyzer import MeasureSettings, PerfPoint, measure
from perf.inputs import model_samples, select, write_input_json


@dataclass(frozen=True)
class Candidate:
    """Serving settings for the compute models. preferred=None with delay=None means: no dynamic batching."""

    max_queue_delay_us: int | None
    preferred_batch_sizes: tuple[int, ...]
    instance_count: int

    @property
    def batching(self) -> bool:
        return self.max_queue_delay_us is not None

    def describe(self) -> str:
        if not self.batching:
            return f"no dynamic batching, {self.instance_count} instance(s)"
        pref = list(self.preferred_batch_sizes) or "none"
        return f"delay {self.max_queue_delay_us} us, preferred {pref}, {self.instance_count} instance(s)"


@dataclass
class Trial:
    candidate: Candidate
    point: PerfPoint | None
    error: str = ""
    default: bool = False

    def fits(self, budget_ms: float) -> bool:
        return self.point is not None and self.point.p95_us / 1000 <= budget_ms


@dataclass
class SearchResult:
    model: str
    concurrency: int
    budget_ms: float
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None

    @property
    def default(self) -> Trial:
        return next(t for t in self.trials if t.default)

    def to_dict(self) -> dict:
        def trial(t: Trial) -> dict:
            return {"candidate": asdict(t.candidate), "describe": t.candidate.describe(), "default": t.default,
                    "error": t.error, "point": t.point.to_dict() if t.point else None}
        return {"model": self.model, "concurrency": self.concurrency, "budget_ms": self.budget_ms,
                "trials": [trial(t) for t in self.trials], "best": trial(self.best) if self.best else None}


def default_candidate(spec: BuildSpec) -> Candidate:
    """The settings the spec has now."""
    s = spec.serving
    if not s.dynamic_batching.enabled:
        return Candidate(None, (), s.instance_count)
    return Candidate(s.dynamic_batching.max_queue_delay_us, tuple(s.dynamic_batching.preferred_batch_sizes),
                     s.instance_count)


def grid(max_batch: int, delays=(0, 1000, 4000), instances=(1, 2), with_preferred: bool = True) -> list[Candidate]:
    """The candidates: queue delay x (no preferred sizes | powers of two up to max batch) x instances."""
    preferred = [()]
    if with_preferred:
        preferred.append(tuple(b for b in (4, 8, 16, 32, 64) if b <= max_batch))
    return [Candidate(d, p, i) for d in delays for p in preferred for i in instances]


def compute_models(repo: Path, public: str) -> list[str]:
    """The models whose batching and instances a candidate sets: the build's in-process runners (and its
    native-backend variants, which the local CPU server cannot load)."""
    manifest = json.loads((repo / public / "tritonforge_manifest.json").read_text())
    return [m for m in manifest["models"] if m.startswith(f"{public}_ort") or
            (m.startswith(f"{public}_") and read_config(repo / m / "config.pbtxt").backend == "onnxruntime")]


def logic_models(repo: Path, public: str) -> list[str]:
    """The build's serving-logic models (tokenizer, cache, router): they batch too."""
    manifest = json.loads((repo / public / "tritonforge_manifest.json").read_text())
    return [m for m in manifest["models"] if m in (f"{public}_tokenizer", f"{public}_cache", f"{public}_router")]


def apply(candidate: Candidate, repo: Path, models: list[str], admin, logic: list[str] = ()) -> None:
    """Reload each model with the candidate's settings as a config override (repository config untouched).
    Serving-logic models in `logic` keep their own settings, but lose batching when the candidate has none."""
    for name in list(models) + list(logic):
        cfg = read_config(repo / name / "config.pbtxt")
        if name in logic:
            if candidate.batching:
                continue
            cfg.ClearField("dynamic_batching")
        else:
            cfg.ClearField("dynamic_batching")
            if candidate.batching:
                cfg.dynamic_batching.max_queue_delay_microseconds = candidate.max_queue_delay_us
                cfg.dynamic_batching.preferred_batch_size.extend(candidate.preferred_batch_sizes)
            for group in cfg.instance_group:
                group.count = candidate.instance_count
        _load(admin, name, json_format.MessageToJson(cfg))


def _load(admin, name: str, config: str | None = None) -> None:
    """(Re)load a model; a backend this server lacks (onnxruntime, tensorrt locally) is not an error here."""
    try:
        admin.load_model(name, config=config)
    except Exception as e:
        if "unable to find backend library" not in str(e):
            raise


def restore(admin, models: list[str]) -> None:
    """Reload models from the repository's own configs (undo `apply`)."""
    for name in models:
        _load(admin, name)


def search(spec_path: Path, repo: Path, url: str, concurrency: int = 16, budget_ms: float = 50.0,
           candidates: list[Candidate] | None = None, settings: MeasureSettings | None = None,
           on_trial=None) -> SearchResult:
    """Measure the default and every candidate in one run; `best` is the fastest within the budget."""
    import tritonclient.grpc as grpcclient

    spec = load_spec(spec_path)
    settings = settings or MeasureSettings(url=url, measurement_interval_ms=2000, max_trials=5)
    models = compute_models(repo, spec.name)
    logic = logic_models(repo, spec.name)
    default = default_candidate(spec)
    todo = [default] + [c for c in (candidates or grid(spec.max_batch_size)) if c != default]
    result = SearchResult(spec.name, concurrency, budget_ms)
    admin = grpcclient.InferenceServerClient(url)
    with tempfile.TemporaryDirectory(prefix="tf-search-") as tmp:
        data = write_input_json(select(model_samples(repo, spec.name), "unique", 5000), Path(tmp) / "inputs.json")
        try:
            for i, candidate in enumerate(todo):
                if on_trial:
                    on_trial(i, len(todo), candidate)
                try:
                    apply(candidate, repo, models, admin, logic)
                    trial = Trial(candidate, measure(spec.name, settings, 1, concurrency, None, data), default=i == 0)
                except Exception as e:
                    trial = Trial(candidate, None, f"{type(e).__name__}: {str(e)[-300:]}", default=i == 0)
                result.trials.append(trial)
        finally:
            restore(admin, models + logic)
            admin.close()
    fitting = [t for t in result.trials if t.fits(budget_ms)]
    result.best = max(fitting, key=lambda t: t.point.throughput) if fitting else None  # type: ignore[union-attr]
    return result


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
    with open(spec_path, "w") as f:
        yaml.dump(data, f)
