"""The Triton models one build publishes and how they are wired.

For a spec named `m`:
  m             the public model (Python backend): input checks, the tokenizer (with `preprocess`), the response
                cache, and the router over the rungs, in one hop. Its last rungs (the in-process runner's variant,
                then FP32) run inside it, so on a server without native backends a miss makes no BLS call; in a
                container the native rungs are one BLS call away. With `cache: {kind: triton}` Triton's own
                response cache answers in front of it instead of tritonforge's.
  m_<variant>   one model per published variant in its native backend: onnxruntime for ONNX files,
                tensorrt_plan for TensorRT plans, pytorch_libtorch for torch-tensorrt modules (none of these
                backends is in the local CPU server; all are in NGC containers), called at this build's version
  m_ort         the runner: the in-process variant as a model of its own (Python backend), the compute path
                without the serving logic, for benchmarks and direct calls
Models are listed compute first, the public model last: the order they are published and reloaded in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonforge import dtypes, serving
from tritonforge.builder.runtimes import RUNTIMES
from tritonforge.builder.triton_cache import triton_cache_enabled
from tritonforge.builder.variants import VariantOutcome
from tritonforge.errors import SpecError
from tritonforge.hashing import sha256_bytes, sha256_file
from tritonforge.repository import config as cfg
from tritonforge.repository.files import FP32_FILE, NO_BYTECODE, RUNNER_FILE, SERVING_PACKAGE, TOKENIZER_FILE, TRITON_CACHE_BYTES
from tritonforge.repository.layout import ModelDir
from tritonforge.repository.manifest import ModelRole, Role
from tritonforge.serving.metric_names import METRICS_INTERVAL_MS
from tritonforge.serving.settings import (
    PARAMETER,
    BlsRungSettings,
    CacheSettings,
    FrontSettings,
    GateSettings,
    InProcessRungSettings,
    OutputThresholds,
    PreprocessSettings,
    PublicSettings,
    RouterSettings,
    RungSettings,
    RunnerSettings,
    Settings,
    ShadowSettings,
    TensorSignature,
    WarmupSettings,
    dumps,
)
from tritonforge.spec import PYTHON_CACHE_KINDS, BuildSpec, TensorSpec


@dataclass(frozen=True)
class Names:
    """Model names derived from the spec's name."""

    public: str

    @property
    def runner(self) -> str:
        return f"{self.public}_ort"

    @property
    def front(self) -> str:
        return f"{self.public}_front"

    def variant(self, variant_id: str) -> str:
        return f"{self.public}_{variant_id}"


def scheduling(spec: BuildSpec, kind: str, warmup: bool = True) -> cfg.Scheduling:
    s = spec.serving
    return cfg.Scheduling(
        max_batch_size=spec.max_batch_size,
        dynamic_batching=s.dynamic_batching,
        instance_count=s.instance_count,
        instance_kind=kind,
        warmup=s.warmup if warmup else None,
    )


def variant_io(spec: BuildSpec, outcome: VariantOutcome) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The variant's tensor signature: FP16 variants built without keep_io_types take and give float16."""
    if outcome.precision == "fp16" and outcome.options.get("keep_io_types") is False:

        def half(t: TensorSpec) -> TensorSpec:
            return t.model_copy(update={"dtype": "float16"}) if t.dtype == "float32" else t

        return [half(t) for t in spec.inputs], [half(t) for t in spec.outputs]
    return list(spec.inputs), list(spec.outputs)


def serving_files(model_source: str, **data: Path | bytes) -> dict[str, Path | bytes]:
    """model.py from serving/triton_models/, the serving package beside it, and data files. Sources are copied as
    bytes, never hard-linked: editing a deployed repository must not edit the installed package, or back."""
    here = Path(serving.__file__).parent
    files: dict[str, Path | bytes] = {"model.py": (here / "triton_models" / f"{model_source}.py").read_bytes()}
    files.update({f"{SERVING_PACKAGE}/{p.name}": p.read_bytes() for p in sorted(here.glob("*.py"))})
    # The Python-backend stub imports model.py with bytecode writing on (it ignores PYTHONDONTWRITEBYTECODE), so
    # a writable repository would get __pycache__/ beside it: a plain file of that name makes Python skip the
    # write (it ignores the OSError). model.py itself turns bytecode off before importing the package.
    files[NO_BYTECODE] = b""
    files.update(data)
    return files


def serving_sources() -> list[Path]:
    """The sources that decide what a build writes besides its spec and data: the files it copies into the
    repository and the code that lays the repository out (hashed into the build fingerprint, so a new
    tritonforge rewrites the repository; its stages are still reused)."""
    from tritonforge import repository
    from tritonforge.builder import probe_sample, runtimes
    from tritonforge.server import probe

    here = Path(serving.__file__).parent
    return (
        sorted(here.glob("*.py"))
        + sorted((here / "triton_models").glob("*.py"))
        + [Path(__file__)]
        + sorted(Path(runtimes.__file__).parent.glob("*.py"))  # each runtime's Triton model layout
        + sorted(Path(repository.__file__).parent.glob("*.py"))
        + [Path(probe_sample.__file__), Path(probe.__file__)]
    )  # the probe's sample and rule


def file_hashes(files: dict[str, Path | bytes]) -> dict[str, str]:
    """The sha256 of every file a Python model's version directory gets, for its settings' `files`: the model
    checks them at load (serving/integrity.py). Files are hashed as they are placed (a variant reconverted from a
    reused stage need not be byte-identical to the one its outcome recorded)."""
    return {rel: sha256_bytes(c) if isinstance(c, bytes) else sha256_file(c) for rel, c in sorted(files.items())}


def _settings(config: cfg.ModelConfig, settings: Settings) -> None:
    config.parameters[PARAMETER].string_value = dumps(settings)


def _triton_cache(config: cfg.ModelConfig, spec: BuildSpec) -> None:
    """Triton's response cache on the public model, where the spec asks and its key allows (triton_cache.py), and
    the cache size the server needs for it."""
    if triton_cache_enabled(spec):
        config.response_cache.enable = True
        config.parameters[TRITON_CACHE_BYTES].string_value = str(spec.serving.triton_cache.size_bytes)


def runner_model(spec: BuildSpec, outcome: VariantOutcome) -> ModelDir:
    """The in-process variant as a model of its own."""
    name = Names(spec.name).runner
    config = cfg.python_model(name, spec.inputs, spec.outputs, scheduling(spec, "cpu"))
    files = serving_files("runner", **{"model.onnx": Path(outcome.file)})
    _settings(
        config,
        RunnerSettings(
            file="model.onnx", variant=outcome.id, intra_op_threads=spec.serving.intra_op_threads, files=file_hashes(files)
        ),
    )
    role = ModelRole(Role.RUNNER, outcome.id, "onnxruntime", "model.onnx")
    return ModelDir(name, config, role, files)


def variant_model(spec: BuildSpec, outcome: VariantOutcome, order: int) -> ModelDir:
    """The Triton model serving one published variant in its native backend (`order`: its place in the router):
    its runtime's layout (tritonforge/builder/runtimes/)."""
    name = outcome.published_as
    inputs, outputs = variant_io(spec, outcome)
    path = Path(outcome.file)

    runtime = RUNTIMES[outcome.runtime]
    layout = runtime.layout(name, inputs, outputs, scheduling(spec, runtime.instance_kind), path)
    role = ModelRole(Role.RUNG, outcome.id, outcome.runtime, layout.file, order)
    return ModelDir(name, layout.config, role, dict(layout.files))


def tensor_signature(t: TensorSpec) -> TensorSignature:
    """A tensor as the serving logic reads it (settings.TensorSignature)."""
    return TensorSignature(name=t.name, dtype=t.dtype, dims=tuple(t.shape), dim_names=tuple(t.dim_names), range=t.range)


def preprocess_settings(spec: BuildSpec) -> PreprocessSettings | None:
    """The spec's preprocess section as the serving logic reads it, the tokenizer as TOKENIZER_FILE."""
    if spec.preprocess is None:
        return None
    p = spec.preprocess.model_dump(mode="json")
    return PreprocessSettings(**{**p, "buckets": tuple(p["buckets"]), "file": TOKENIZER_FILE})


def gate_settings(spec: BuildSpec) -> GateSettings:
    """The spec's gate as the served model's shadow reads it (the same thresholds and output kinds)."""
    g, tol = spec.gate, spec.validation.tolerance
    own = ("min_cosine", "min_top1_agreement", "max_accuracy_drop", "max_mean_rel", "max_abs")
    return GateSettings(
        min_cosine=g.min_cosine,
        min_top1_agreement=g.min_top1_agreement,
        max_accuracy_drop=g.max_accuracy_drop,
        max_mean_rel=g.max_mean_rel,
        max_abs=g.max_abs,
        outputs={n: OutputThresholds(**{k: getattr(o, k) for k in own}) for n, o in g.outputs.items()},
        kinds=spec.output_kinds,
        atol=tol.atol,
        rtol=tol.rtol,
    )


def shadow_settings(spec: BuildSpec, reference_file: str) -> ShadowSettings | None:
    """serving.shadow as the public model reads it, None when it is off."""
    sh = spec.serving.shadow
    if sh.fraction <= 0:
        return None
    settings = ShadowSettings(
        fraction=sh.fraction,
        window=sh.window,
        min_samples=sh.min_samples,
        max_pending=sh.max_pending,
        probation_s=sh.probation_s,
        confidence=sh.confidence,
        reference_file=reference_file,
        gate=gate_settings(spec),
    )
    if settings.judged_after > sh.window:
        raise SpecError(
            f"serving.shadow.window: {sh.window} samples are too few to judge the gate's top-1 agreement: one "
            f"disagreement alone would break it; a window of at least {settings.judged_after} (and min_samples as "
            "many) can tell a drift from one sample"
        )
    return settings


@dataclass
class ServingPlan:
    """The chosen variants and derived facts the models are built from."""

    published: list[VariantOutcome]  # every published variant, fastest first
    cpu_variant: VariantOutcome  # what the in-process runner runs
    fp32: VariantOutcome
    cache_version: str
    tokenizer_file: Path | None


def public_model(spec: BuildSpec, plan: ServingPlan, version: int) -> ModelDir:
    """The model clients call, with every serving setting dumped from the spec."""
    s = spec.serving
    rungs: list[RungSettings] = [
        BlsRungSettings(
            model=o.published_as,
            version=version,
            inputs={t.name: dtypes.by_name(t.dtype).triton for t in variant_io(spec, o)[0]},
        )
        for o in plan.published
    ]
    files: dict[str, Path | bytes] = {RUNNER_FILE: Path(plan.cpu_variant.file)}
    rungs.append(InProcessRungSettings(name=f"in_process:{plan.cpu_variant.published_as}", file=RUNNER_FILE))
    fp32_file = RUNNER_FILE if plan.cpu_variant.id == plan.fp32.id else FP32_FILE
    if fp32_file == FP32_FILE and (s.router.fp32_last_rung or s.shadow.fraction > 0):
        files[FP32_FILE] = Path(plan.fp32.file)  # the last rung, or only the shadow's reference
    if fp32_file == FP32_FILE and s.router.fp32_last_rung:
        rungs.append(InProcessRungSettings(name=f"in_process:{plan.fp32.published_as}", file=FP32_FILE))
    if spec.preprocess is not None:
        assert plan.tokenizer_file is not None
        files[TOKENIZER_FILE] = plan.tokenizer_file.read_bytes()
    cache = CacheSettings(**s.cache.model_dump(mode="json")) if s.cache.kind in PYTHON_CACHE_KINDS else None
    files = serving_files("public", **files)
    settings = PublicSettings(
        public=spec.name,
        cache_version=plan.cache_version,
        inputs=tuple(tensor_signature(t) for t in spec.public_inputs),
        model_inputs=tuple(tensor_signature(t) for t in spec.inputs),
        outputs=tuple(tensor_signature(t) for t in spec.outputs),
        max_request_bytes=s.max_request_bytes,
        reject_nonfinite=s.router.reject_nonfinite,
        intra_op_threads=s.intra_op_threads,
        preprocess=preprocess_settings(spec),
        cache=cache,
        router=RouterSettings(
            breaker_failures=s.router.breaker_failures,
            breaker_seconds=s.router.breaker_seconds,
            rung_timeout_ms=s.router.rung_timeout_ms,
        ),
        rungs=tuple(rungs),
        metrics_interval_ms=METRICS_INTERVAL_MS,
        warmup=WarmupSettings(batch_sizes=tuple(s.warmup.batch_sizes), dynamic_dim=s.warmup.dynamic_dim),
        shadow=shadow_settings(spec, fp32_file),
        files=file_hashes(files),
    )
    # The public model warms its in-process rungs itself: Triton's warm-up requests would go through the cache
    # (a shared Redis answers them, and the compute is never warmed) and reach no BLS rung before the server is up.
    config = cfg.python_model(spec.name, spec.public_inputs, spec.outputs, scheduling(spec, "cpu", warmup=False))
    _triton_cache(config, spec)
    _settings(config, settings)
    role = ModelRole(Role.PUBLIC, plan.cpu_variant.id, "onnxruntime", RUNNER_FILE)
    return ModelDir(spec.name, config, role, files)


FRONT_SUFFIX = "__front"  # the front step's outputs: the compute step's inputs, named apart from the ensemble's


def front_model(spec: BuildSpec, plan: ServingPlan) -> ModelDir:
    """serving.topology ensemble: the first step, the input checks and the tokenizer (front.py)."""
    name = Names(spec.name).front
    outputs = [t.model_copy(update={"name": f"{t.name}{FRONT_SUFFIX}"}) for t in spec.inputs]
    config = cfg.python_model(name, spec.public_inputs, outputs, scheduling(spec, "cpu", warmup=False))
    data: dict[str, Path | bytes] = {}
    if spec.preprocess is not None:
        assert plan.tokenizer_file is not None
        data[TOKENIZER_FILE] = plan.tokenizer_file.read_bytes()
    files = serving_files("front", **data)
    s = spec.serving
    settings = FrontSettings(
        front=spec.name,
        inputs=tuple(tensor_signature(t) for t in spec.public_inputs),
        model_inputs=tuple(tensor_signature(t) for t in spec.inputs),
        max_request_bytes=s.max_request_bytes,
        reject_nonfinite=s.router.reject_nonfinite,
        preprocess=preprocess_settings(spec),
        files=file_hashes(files),
    )
    _settings(config, settings)
    return ModelDir(name, config, ModelRole(Role.FRONT), files)


def ensemble_compute(spec: BuildSpec, plan: ServingPlan) -> tuple[VariantOutcome, str, str]:
    """(variant, model, why) of the ensemble's compute step: the runner model, or the primary variant's native
    model where the spec asks for it and it takes the model's own tensors (an FP16-I/O variant would need a
    conversion step: the runner serves then, and `why` says so)."""
    runner = (plan.cpu_variant, Names(spec.name).runner, "the in-process runner model (serving.ensemble_compute: runner)")
    if spec.serving.ensemble_compute == "runner":
        return runner
    primary = plan.published[0]
    if variant_io(spec, primary) != (list(spec.inputs), list(spec.outputs)):
        return (
            runner[0],
            runner[1],
            f"the in-process runner model: the primary {primary.id} takes or gives float16, which needs a conversion step",
        )
    return primary, primary.published_as, f"the primary variant's native model ({primary.runtime})"


def ensemble_public_model(spec: BuildSpec, plan: ServingPlan, version: int) -> ModelDir:
    """serving.topology ensemble: the model clients call, front step then compute step."""
    variant, compute, _why = ensemble_compute(spec, plan)
    steps = [
        cfg.EnsembleStep(
            Names(spec.name).front,
            version,
            {t.name: t.name for t in spec.public_inputs},
            {f"{t.name}{FRONT_SUFFIX}": f"{t.name}{FRONT_SUFFIX}" for t in spec.inputs},
        ),
        cfg.EnsembleStep(
            compute, version, {t.name: f"{t.name}{FRONT_SUFFIX}" for t in spec.inputs}, {t.name: t.name for t in spec.outputs}
        ),
    ]
    config = cfg.ensemble_model(spec.name, spec.public_inputs, spec.outputs, spec.max_batch_size, steps)
    _triton_cache(config, spec)  # Triton caches an ensemble's top-level requests when every step can be cached
    return ModelDir(spec.name, config, ModelRole(Role.PUBLIC, variant.id, variant.runtime, ""))


def plan_models(spec: BuildSpec, plan: ServingPlan, version: int) -> list[ModelDir]:
    """Every model directory the build writes, compute models first and the public model last."""
    rungs = [variant_model(spec, o, i) for i, o in enumerate(plan.published)]
    if spec.serving.topology == "ensemble":
        front = front_model(spec, plan)
        return [*rungs, runner_model(spec, plan.cpu_variant), front, ensemble_public_model(spec, plan, version)]
    return [*rungs, runner_model(spec, plan.cpu_variant), public_model(spec, plan, version)]
