"""The Triton models one build publishes and how they are wired.

For a spec named `m`:
  m             the public model, an ensemble: [m_tokenizer] -> m_cache -> (BLS) m_router -> (BLS) rungs, or
                with a tokenizer and the cache before it (the default): m_cache -> (BLS) m_pipeline
  m_pipeline    only then: the ensemble m_tokenizer -> m_router (what a cache miss computes)
  m_tokenizer   Python backend, only with `preprocess: tokenizer`: texts -> token ids + attention mask
  m_cache       Python backend: response cache (Redis or in-process LRU); absent for cache kind triton/none
  m_router      Python backend: fallback router over the rungs, fastest passing variant first
  m_<variant>   one model per published variant in its native backend: onnxruntime for ONNX files,
                tensorrt_plan for TensorRT plans, pytorch_libtorch for torch-tensorrt modules (none of these
                backends is in the local CPU server; all are in NGC containers)
  m_ort         Python backend: the chosen ONNX variant run in-process by ONNX Runtime (CPU, or CUDA)
  m_ort_fp32    Python backend: the FP32 reference in-process, the last rung (when m_ort runs another variant)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tritonforge import dtypes
from tritonforge.repository import config as cfg
from tritonforge.repository.layout import ModelDir, python_model_files
from tritonforge.repository.manifest import ModelRole, Role
from tritonforge.build.spec import PYTHON_CACHE_KINDS, BuildSpec, DynamicBatchingSpec, TensorSpec
from tritonforge.build.variants import VariantOutcome


@dataclass(frozen=True)
class Names:
    """Model names derived from the spec's name."""

    public: str

    @property
    def ort(self) -> str:
        return f"{self.public}_ort"

    @property
    def ort_fp32(self) -> str:
        return f"{self.public}_ort_fp32"

    @property
    def router(self) -> str:
        return f"{self.public}_router"

    @property
    def cache(self) -> str:
        return f"{self.public}_cache"

    @property
    def tokenizer(self) -> str:
        return f"{self.public}_tokenizer"

    @property
    def pipeline(self) -> str:
        return f"{self.public}_pipeline"

    def variant(self, variant_id: str) -> str:
        return f"{self.public}_{variant_id}"


def scheduling(spec: BuildSpec, kind: str, warmup: bool = True, instances: int | None = None) -> cfg.Scheduling:
    s = spec.serving
    return cfg.Scheduling(
        max_batch_size=spec.max_batch_size,
        dynamic_batching=s.dynamic_batching,
        instance_count=instances or s.instance_count,
        instance_kind=kind,
        warmup=s.warmup if warmup else None,
    )


def _logic_scheduling(spec: BuildSpec, instances: int) -> cfg.Scheduling:
    """Serving-logic models merge whatever requests are already queued but never wait for more (the compute
    models' batchers do the waiting), and run no warm-up (their BLS targets may still be loading)."""
    s = spec.serving.dynamic_batching
    batching = DynamicBatchingSpec(enabled=s.enabled, preferred_batch_sizes=[], max_queue_delay_us=0)
    return cfg.Scheduling(spec.max_batch_size, batching, instances, "cpu", None)


def variant_io(spec: BuildSpec, outcome: VariantOutcome) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The variant's tensor signature: FP16 variants built without keep_io_types take and give float16."""
    if outcome.precision == "fp16" and outcome.options.get("keep_io_types") is False:
        def half(t: TensorSpec) -> TensorSpec:
            return t.model_copy(update={"dtype": "float16"}) if t.dtype == "float32" else t
        return [half(t) for t in spec.inputs], [half(t) for t in spec.outputs]
    return list(spec.inputs), list(spec.outputs)


def ort_runner_model(spec: BuildSpec, name: str, outcome: VariantOutcome) -> ModelDir:
    params = {"onnx_file": "model.onnx", "intra_op_threads": str(spec.serving.intra_op_threads)}
    config = cfg.python_model(name, spec.inputs, spec.outputs, scheduling(spec, "cpu"), params)
    role = ModelRole(Role.RUNNER, outcome.id, "onnxruntime", "model.onnx")
    return ModelDir(name, config, role, python_model_files("ort_runner", **{"model.onnx": Path(outcome.file)}))


def variant_model(spec: BuildSpec, outcome: VariantOutcome, order: int) -> ModelDir:
    """The Triton model serving one published variant in its native backend (`order`: its place in the router)."""
    name = outcome.published_as
    inputs, outputs = variant_io(spec, outcome)
    path = Path(outcome.file)

    def role(file: str) -> ModelRole:
        return ModelRole(Role.RUNG, outcome.id, outcome.runtime, file, order)

    if outcome.runtime == "onnxruntime":
        config = cfg.onnxruntime_model(name, inputs, outputs, scheduling(spec, "auto"))
        return ModelDir(name, config, role("model.onnx"), {"model.onnx": path})
    if outcome.runtime == "tensorrt":
        # One plan per compute capability: on another GPU Triton finds no plan and the model stays UNAVAILABLE.
        from tritonforge.hardware import gpu_info

        cc = gpu_info().compute_capability or "0.0"
        filename = f"model_sm{cc.replace('.', '')}.plan"
        config = cfg.tensorrt_model(name, inputs, outputs, scheduling(spec, "gpu"), {cc: filename})
        return ModelDir(name, config, role(filename), {filename: path})
    if outcome.runtime == "pytorch":
        config = cfg.pytorch_model(name, inputs, outputs, scheduling(spec, "gpu"))
        return ModelDir(name, config, role("model.pt"), {"model.pt": path})
    raise ValueError(f"no Triton model layout for runtime {outcome.runtime!r}")


# How often the router and the cache send their counters to /metrics (off the request path); readers that
# need exact counts right after a request wait METRICS_LAG_S.
METRICS_INTERVAL_MS = 100
METRICS_LAG_S = 3 * METRICS_INTERVAL_MS / 1000


def _rung(model: str, inputs: list[TensorSpec]) -> dict:
    return {"model": model, "inputs": {t.name: dtypes.by_name(t.dtype).triton for t in inputs}}


def router_model(spec: BuildSpec, rungs: list[dict]) -> ModelDir:
    r = spec.serving.router
    params = {
        "rungs": json.dumps(rungs, separators=(",", ":")),
        "breaker_failures": str(r.breaker_failures),
        "breaker_seconds": str(r.breaker_seconds),
        "rung_timeout_ms": str(r.rung_timeout_ms),
        "reject_nonfinite": "true" if r.reject_nonfinite else "false",
        "metrics_interval_ms": str(METRICS_INTERVAL_MS),
    }
    name = Names(spec.name).router
    config = cfg.python_model(name, spec.inputs, spec.outputs, _logic_scheduling(spec, r.instance_count), params)
    return ModelDir(name, config, ModelRole(Role.ROUTER), python_model_files("router"))


def cache_model(spec: BuildSpec, target: str, version: str, inputs: list[TensorSpec]) -> ModelDir:
    """The response cache in front of `target`, keyed on `inputs` (the texts, or the model's own inputs)."""
    c = spec.serving.cache
    params = {
        "target": target, "public_model": spec.name, "model_version": version,
        "backend": c.kind, "redis_url": c.redis_url, "redis_url_env": c.redis_url_env, "password_env": c.password_env,
        "ssl_ca_certs": c.ssl_ca_certs, "ssl_certfile": c.ssl_certfile, "ssl_keyfile": c.ssl_keyfile,
        "ttl_s": str(c.ttl_s), "key_prefix": c.key_prefix, "compression_level": str(c.compression_level),
        "max_value_bytes": str(c.max_value_bytes), "memory_max_bytes": str(c.memory_max_bytes),
        "socket_timeout_ms": str(c.socket_timeout_ms), "bypass_seconds": str(c.bypass_seconds),
        "max_connections": str(c.max_connections), "metrics_interval_ms": str(METRICS_INTERVAL_MS),
    }
    name = Names(spec.name).cache
    config = cfg.python_model(name, inputs, spec.outputs, _logic_scheduling(spec, c.instance_count), params)
    return ModelDir(name, config, ModelRole(Role.CACHE), python_model_files("cache"))


def public_inputs(spec: BuildSpec) -> list[TensorSpec]:
    """What clients send: texts when a tokenizer pre-processes, else the model's own inputs."""
    if spec.preprocess is None:
        return list(spec.inputs)
    return [TensorSpec(name=spec.preprocess.text_input, dtype="string", shape=[1])]


def tokenizer_model(spec: BuildSpec, tokenizer_file: Path) -> ModelDir:
    t = spec.preprocess
    assert t is not None
    params = {"tokenizer_file": "tokenizer.json", "max_length": str(t.max_length), "buckets": json.dumps(t.buckets),
              "max_text_bytes": str(t.max_text_bytes), "pad_id": str(t.pad_id),
              "outputs": json.dumps([spec.inputs[0].name, spec.inputs[1].name])}
    name = Names(spec.name).tokenizer
    config = cfg.python_model(name, public_inputs(spec), spec.inputs, _logic_scheduling(spec, t.instance_count), params)
    return ModelDir(name, config, ModelRole(Role.TOKENIZER, file="tokenizer.json"),
                    python_model_files("tokenizer", **{"tokenizer.json": tokenizer_file.read_bytes()}))


def ensemble(spec: BuildSpec, name: str, steps: list[ModelDir], role: Role, response_cache: bool = False,
             extra: dict[str, Path | bytes] | None = None) -> ModelDir:
    """An ensemble of `steps` from the public inputs to the model's outputs. Tensors keep their names through
    the steps, so each step maps its own inputs and outputs by name."""
    chain = [cfg.EnsembleStep(m.name, {t.name: t.name for t in m.config.input}, {t.name: t.name for t in m.config.output})
             for m in steps]
    config = cfg.ensemble_model(name, public_inputs(spec), spec.outputs, spec.max_batch_size, chain,
                                response_cache=response_cache)
    return ModelDir(name, config, ModelRole(role), {}, extra=extra or {})


@dataclass
class ServingPlan:
    """The chosen variants and derived facts the models are built from."""

    published: list[VariantOutcome]  # every published variant, fastest first
    cpu_variant: VariantOutcome  # what m_ort runs
    fp32: VariantOutcome
    cache_version: str
    tokenizer_file: Path | None
    report_files: dict[str, Path | bytes]


def plan_models(spec: BuildSpec, plan: ServingPlan) -> list[ModelDir]:
    """Every model directory the build writes."""
    names = Names(spec.name)
    models = [variant_model(spec, o, i) for i, o in enumerate(plan.published)]
    rungs = [_rung(o.published_as, variant_io(spec, o)[0]) for o in plan.published]
    models.append(ort_runner_model(spec, names.ort, plan.cpu_variant))
    rungs.append(_rung(names.ort, spec.inputs))
    if plan.cpu_variant.id != plan.fp32.id and spec.serving.router.fp32_last_rung:
        models.append(ort_runner_model(spec, names.ort_fp32, plan.fp32))
        rungs.append(_rung(names.ort_fp32, spec.inputs))
    router = router_model(spec, rungs)
    models.append(router)
    steps = [router]
    if spec.preprocess is not None:
        assert plan.tokenizer_file is not None
        steps.insert(0, tokenizer_model(spec, plan.tokenizer_file))
        models.append(steps[0])
    c = spec.serving.cache
    if c.kind in PYTHON_CACHE_KINDS:
        if spec.preprocess is not None and c.placement == "before_preprocess":
            models.append(ensemble(spec, names.pipeline, steps, Role.PIPELINE))
            cache = cache_model(spec, names.pipeline, plan.cache_version, public_inputs(spec))
            steps = [cache]
        else:
            cache = cache_model(spec, router.name, plan.cache_version, list(spec.inputs))
            steps = steps[:-1] + [cache]
        models.append(cache)
    models.append(ensemble(spec, spec.name, steps, Role.PUBLIC, c.kind == "triton", plan.report_files))
    return models
