"""The declarative build spec: one YAML file per model, validated with errors that name file and field."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, overload

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from tritonforge import dtypes
from tritonforge.errors import SpecError, closest
from tritonforge.spec.base import CALIBRATION_METHODS, SourceBase, VariantBase
from tritonforge.spec.base import Strict as _Strict
from tritonforge.spec.refs import CALLABLE_REF, import_callable
from tritonforge.spec.registry import SOURCE_KINDS, VARIANT_KINDS, KindRegistry

MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class TensorSpec(_Strict):
    """One input or output. `shape` is per item, without the batch dimension; -1 marks a dynamic dim."""

    name: str
    # a Literal over a tuple built at import: pydantic reads it, mypy cannot
    dtype: Literal[dtypes.NAMES]  # type: ignore[valid-type]
    shape: list[int] = Field(min_length=0)
    range: tuple[float, float] | None = Field(
        None,
        description="[low, high]: every value must lie within (token ids: [0, vocabulary size - 1]); the "
        "served model refuses others with INVALID_ARGUMENT, perf generates inputs within it",
    )
    dim_names: list[str] = Field(
        default_factory=list,
        description="names of the -1 dims, in order (the exported "
        "ONNX graph's dim params, e.g. 'sequence'); inputs "
        "that share a name share that length",
    )

    @model_validator(mode="after")
    def _range(self) -> TensorSpec:
        if len(self.dim_names) > self.shape.count(-1):
            raise ValueError(f"tensor '{self.name}': {len(self.dim_names)} dim_names for {self.shape.count(-1)} dynamic dims")
        bad = [n for n in self.dim_names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
        if bad:
            raise ValueError(f"tensor '{self.name}': dim names must be identifiers, got {bad}")
        if self.range is not None:
            if self.dtype in ("string", "bool"):
                raise ValueError(f"tensor '{self.name}': a range needs a numeric dtype, not {self.dtype}")
            if not self.range[0] <= self.range[1]:
                raise ValueError(f"tensor '{self.name}': range {list(self.range)} must be [low, high] with low <= high")
        return self

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> Any:
        """Triton's spellings (TYPE_FP32, FP32, fp32, ...) read as the spec's names; an unknown one says which
        name is closest."""
        if not isinstance(v, str):
            return v
        name = dtypes.canonical(v)
        if name is None:
            near = dtypes.closest(v)
            hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
            raise ValueError(
                f"dtype {v!r} is not a tensor type: {hint}the spec's names are {', '.join(dtypes.NAMES)} "
                "(Triton's TYPE_FP32 / FP32 spellings are read as float32, and so on)"
            )
        return name

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TENSOR_NAME.match(v):
            raise ValueError(f"tensor name {v!r} must match {TENSOR_NAME.pattern}")
        return v

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        bad = [d for d in v if d == 0 or d < -1]
        if bad:
            raise ValueError(f"dims must be positive or -1 (dynamic), got {v}")
        return v


class DataSpec(_Strict):
    """Held-out data: an .npz keyed by input names (and optionally labels), or 'module:callable' yielding dicts."""

    npz: Path | None = None
    callable: str | None = None
    labels: str | None = Field(None, description="key of integer class labels (enables task accuracy)")
    max_samples: int = Field(4096, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.npz is None) == (self.callable is None):
            raise ValueError("give exactly one of 'npz' or 'callable'")
        if self.callable is not None and not CALLABLE_REF.match(self.callable):
            raise ValueError(f"callable {self.callable!r} must be 'module:callable'")
        return self


class ToleranceSpec(_Strict):
    """Element-wise tolerance of the exported FP32 model against the source model: |a-b| <= atol + rtol*|b|."""

    atol: float = Field(1e-4, ge=0)
    rtol: float = Field(1e-3, ge=0)


class ValidationSpec(_Strict):
    """Held-out data used to verify the export (and, later, to gate every variant)."""

    data: DataSpec
    tolerance: ToleranceSpec = ToleranceSpec()
    batch_size: int = Field(32, ge=1, description="batch size used to run the data through each model")


class ExportSpec(_Strict):
    """ONNX export settings."""

    opset: int = Field(18, ge=13, le=21)
    # IR 8 is what opset 18 needs; ONNX Runtime 1.19 (Triton 24.10) reads IR <= 10.
    ir_version: int = Field(8, ge=7, le=10)


class CalibrationSpec(_Strict):
    """Data for static INT8 calibration and sensitivity analysis: never the validation data."""

    data: DataSpec


OUTPUT_KINDS = ("embedding", "class_scores", "regression")


class OutputGateSpec(_Strict):
    """One output's gate: what it is (which checks apply) and thresholds that differ from the gate's own."""

    # a Literal over a tuple built at import: pydantic reads it, mypy cannot
    kind: Literal[OUTPUT_KINDS] | None = Field(  # type: ignore[valid-type]
        None,
        description="embedding: worst-sample cosine; class_scores: top-1 agreement (and accuracy with "
        "labels); regression: mean relative error (and max abs if set). Default: class_scores "
        "for gate.class_score_outputs, regression for one value per sample, else embedding",
    )
    min_cosine: float | None = Field(None, ge=-1, le=1)
    min_top1_agreement: float | None = Field(None, ge=0, le=1)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)
    max_mean_rel: float | None = Field(None, ge=0)
    max_abs: float | None = Field(None, ge=0)


class GateSpec(_Strict):
    """What a variant must reach against the FP32 reference on the validation data to be published. Each output
    is judged by the checks that fit what it is (see OutputGateSpec.kind), with these thresholds unless
    `outputs` sets its own."""

    min_cosine: float = Field(0.99, ge=-1, le=1, description="embeddings: per-sample cosine similarity, worst sample")
    min_top1_agreement: float = Field(0.99, ge=0, le=1, description="class scores: same argmax as FP32")
    max_accuracy_drop: float = Field(0.01, ge=0, le=1, description="with labels: FP32 accuracy minus variant accuracy")
    max_mean_rel: float = Field(0.05, ge=0, description="regressions: mean |variant - FP32| / mean |FP32|")
    max_abs: float | None = Field(None, ge=0, description="optional bound on the largest absolute difference, every output")
    class_score_outputs: list[str] | None = Field(
        None,
        description="outputs holding class scores (top-1 and accuracy checks, no cosine check); "
        "default: with labels, the first 1-D float output; without labels, none",
    )
    outputs: dict[str, OutputGateSpec] = Field(default_factory=dict, description="per output: kind and thresholds")

    @overload
    def threshold(self, output: str, name: Literal["max_abs"]) -> float | None: ...
    @overload
    def threshold(
        self, output: str, name: Literal["min_cosine", "min_top1_agreement", "max_accuracy_drop", "max_mean_rel"]
    ) -> float: ...
    def threshold(self, output: str, name: str) -> float | None:
        """`output`'s own threshold `name` (gate.outputs), else the gate's (only max_abs may be None)."""
        own = self.outputs.get(output)
        value = getattr(own, name) if own is not None else None
        return getattr(self, name) if value is None else value


class Int8StartSpec(_Strict):
    """One INT8 configuration the accuracy-control search starts from."""

    # a Literal over a tuple built at import: pydantic reads it, mypy cannot
    method: Literal[("dynamic",) + CALIBRATION_METHODS] = "dynamic"  # type: ignore[valid-type]
    per_channel: bool = True
    weights: Literal["int8", "uint8"] = Field("int8", description="dynamic only: the weights' type (see onnx_int8_dynamic)")

    @model_validator(mode="after")
    def _weights_for_dynamic(self) -> Int8StartSpec:
        if self.weights != "int8" and self.method != "dynamic":
            raise ValueError(f"weights: {self.weights} is for method dynamic; {self.method} quantizes weights to int8")
        return self


class Int8SearchSpec(_Strict):
    """INT8 within the accuracy budget; the fastest passing point is published as 'onnx_int8'.

    accuracy_control (the default, as NNCF's quantize_with_accuracy_control does): each start (the fastest
    configurations ONNX Runtime offers) is gated; if none passes, from the closest one the quantized nodes are
    reverted to float one group at a time, most harmful first (ranked by the signal-to-noise each loses on the
    calibration data, ranked again after each revert), each step gated on the whole held-out set, a step that
    made the gate's worst margin worse undone, until the gate passes or `max_evaluations` are spent.
    grid: every method x per_channel x exclude_top point."""

    enabled: bool = False
    strategy: Literal["accuracy_control", "grid"] = "accuracy_control"
    starts: list[Int8StartSpec] = Field(
        default_factory=lambda: [
            Int8StartSpec(method="dynamic"),
            Int8StartSpec(method="dynamic", weights="uint8"),
            Int8StartSpec(method="entropy"),
        ],
        description="fastest first: after a start passes, the later (slower) ones are not tried, and the budget "
        "left goes to reverting nodes of the closest failing start before it",
    )
    max_evaluations: int = Field(8, ge=1, description="accuracy_control: gate evaluations at most, starts included")
    group_size: int = Field(1, ge=1, description="accuracy_control: nodes reverted per step")
    # a Literal over a tuple built at import: pydantic reads it, mypy cannot
    methods: list[Literal[("dynamic",) + CALIBRATION_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["dynamic", "minmax"], description="grid only"
    )
    per_channel: list[bool] = Field(default_factory=lambda: [False, True], description="grid only")
    exclude_top: list[int] = Field(default_factory=lambda: [0, 2, 4], description="grid only: most sensitive nodes kept in float")
    op_types: list[str] = Field(default_factory=lambda: ["MatMul", "Gemm", "Conv", "Attention"])
    graph: Literal["auto", "fused", "exported"] = Field(
        "auto",
        description="the FP32 graph the search quantizes: auto = the fused graph where attention was fused "
        "(QAttention), else the exported one",
    )


class TimingSpec(_Strict):
    """Latency measurement: windows until stable (as Triton Model Navigator does), variants interleaved."""

    batch_sizes: list[int] | None = Field(None, description="default: 1 and max_batch_size")
    warmup_runs: int = Field(5, ge=0)
    window_s: float = Field(0.25, gt=0)
    min_runs_per_window: int = Field(3, ge=1)
    stable_pct: float = Field(10.0, gt=0, description="consecutive windows' medians agree within this percentage")
    stable_windows: int = Field(3, ge=2)
    max_windows: int = Field(12, ge=2)
    enabled: bool = True
    flushed_fp32: bool = Field(
        True,
        description="when the FP32 graph holds subnormal weights, also build, gate and time onnx_fp32_ftz (FP32 with "
        "them set to zero), so that no speed-up is only the cost some CPUs pay for them",
    )


class DynamicBatchingSpec(_Strict):
    """Triton's dynamic batcher on the public model and the compute models. With no queue delay (the default) a
    batch is whatever requests are queued when an instance frees up: no request waits for others that may not
    come (a delay taxes light load), and under load the queue fills while instances compute, so batches form."""

    enabled: bool = True
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    max_queue_delay_us: int = Field(0, ge=0)


class WarmupSpec(_Strict):
    """Warm-up requests Triton sends before a model is READY (zero data, one per batch size)."""

    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    dynamic_dim: int = Field(1, ge=1, description="value used for -1 dims in warm-up tensors")


# Cache kinds served by tritonforge's own cache in the public model (the others: Triton's own cache, or none).
PYTHON_CACHE_KINDS = ("memory", "redis")


class CacheSpec(_Strict):
    """The response cache in the public model, in front of the router.

    memory: in-process LRU per instance; redis: shared by every replica (URL from the environment variable
    `redis_url_env` at serve time, else `redis_url`), every value authenticated with the replicas' shared secret
    (environment variable `secret_env`, or a file named by `secret_env`_FILE; never in the spec or the config);
    triton: Triton's own response cache alone (sized and ruled as serving.triton_cache: only where its key,
    blind to shapes, cannot confuse two requests; no TTL, not shared); none: no cache. With a tokenizer the cache is looked up
    before it by default, keyed on the texts.
    """

    kind: Literal["memory", "redis", "triton", "none"] = "memory"
    placement: Literal["before_preprocess", "after_preprocess"] = Field(
        "before_preprocess",
        description="with a pre-processing step: key on the request as sent (a hit skips pre-processing) or on "
        "the pre-processed model inputs (requests that pre-process alike share one entry)",
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_url_env: str = "TRITONFORGE_REDIS_URL"
    password_env: str = Field(
        "TRITONFORGE_REDIS_PASSWORD",
        description="environment variable holding the Redis password, or naming a file "
        "holding it as <password_env>_FILE (never in configs)",
    )
    secret_env: str = Field(
        "TRITONFORGE_CACHE_SECRET",
        description="environment variable holding the secret the replicas authenticate values "
        "with (HMAC-SHA256), or naming a file as <secret_env>_FILE",
    )
    redis_private: bool = Field(
        False,
        description="serve a Redis cache without a secret: only when nothing but "
        "these replicas can write to that Redis (values are then "
        "unauthenticated); without a secret and without this, the "
        "public model refuses to load",
    )
    ssl_ca_certs: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ttl_s: float = Field(300.0, gt=0)
    key_prefix: str = "tritonforge:"
    compression_level: int = Field(6, ge=0, le=9)
    max_value_bytes: int = Field(
        4 * 2**20,
        ge=1,
        description="largest stored (compressed) value; a bigger one read back is a miss, and is never fetched whole",
    )
    max_entry_bytes: int = Field(16 * 2**20, ge=1, description="largest answer (uncompressed) the cache stores")
    memory_max_bytes: int = Field(256 * 2**20, ge=1)
    max_pending_writes: int = Field(
        256, ge=1, description="batches of answers waiting for the writer; more are dropped and counted"
    )
    socket_timeout_ms: float = Field(50.0, gt=0)
    bypass_seconds: float = Field(5.0, ge=0)
    max_connections: int = Field(16, ge=1)


class RouterSpec(_Strict):
    """The fallback router: variants fastest first, down to ONNX Runtime on CPU, with circuit breakers."""

    breaker_failures: int = Field(3, ge=1)
    breaker_seconds: float = Field(30.0, ge=0)
    rung_timeout_ms: float = Field(0.0, ge=0, description="per-call BLS timeout (0: none)")
    cpu_variant: str | None = Field(None, description="variant the in-process runner serves (default: fastest passing ONNX)")
    fp32_last_rung: bool = Field(True, description="add an in-process FP32 runner as the last rung")
    reject_nonfinite: bool = True


class TritonCacheSpec(_Strict):
    """Triton's own response cache in front of the public model (and its own cache): a hit is answered in the
    server's C++ code, before any Python. Enabled only where Triton's key (input names and bytes, not shapes)
    cannot confuse two requests (every non-batch dim of every public input fixed); otherwise the build says why
    not. Entries live until evicted (no TTL) and each replica has its own; every build is a new model version, so
    a rebuild never answers from the last build's entries."""

    enabled: bool = False
    size_bytes: int = Field(
        64 * 2**20, ge=1, description="the server's cache size: `tritonforge serve` starts the local server with it"
    )


class ShadowSpec(_Strict):
    """Live traffic shadowed to FP32: the public model answers every request from its first rung as always and,
    for a sampled share of them, also runs the FP32 reference off the request path and compares the two with the
    gate's own per-output checks and thresholds. A variant whose last `window` compared samples break the gate
    is demoted: the router serves the next rung (FP32 at worst) until a reload or a rebuild (or `probation_s`)."""

    fraction: float = Field(
        0.0, ge=0, le=1, description="share of computed requests also run on FP32 and compared (0: off; cache hits never)"
    )
    window: int = Field(1000, ge=1, description="the gate judges each variant on its last `window` compared samples")
    min_samples: int = Field(100, ge=1, description="samples a variant's window must hold before the gate judges it")
    max_pending: int = Field(
        64, ge=1, description="sampled requests waiting for the reference; more are dropped and counted, never waited for"
    )
    probation_s: float | None = Field(
        None,
        gt=0,
        description="a demoted variant serves again after this many seconds, its window emptied; "
        "none: only a reload or a rebuild brings it back",
    )
    confidence: float = Field(
        0.99,
        ge=0.5,
        lt=1,
        description="top-1 agreement breaks the gate only when it is below the threshold with this confidence (the "
        "Wilson upper bound of the window's agreement): a variant that passed the gate is not demoted for sampling noise",
    )

    @model_validator(mode="after")
    def _window_holds_min_samples(self) -> ShadowSpec:
        if self.min_samples > self.window:
            raise ValueError(f"min_samples ({self.min_samples}) is more than the window holds ({self.window})")
        return self


class ServingSpec(_Strict):
    """How the models are served."""

    dynamic_batching: DynamicBatchingSpec = DynamicBatchingSpec()
    instance_count: int = Field(
        1, ge=1, le=64, description="instances of the public model and of each compute model (each runs one batch at a time)"
    )
    max_request_bytes: int = Field(
        16 * 2**20, ge=1, description="a request carrying more is refused with INVALID_ARGUMENT before any compute"
    )
    warmup: WarmupSpec = WarmupSpec()
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads per instance (0: runtime default)")
    cache: CacheSpec = CacheSpec()
    triton_cache: TritonCacheSpec = TritonCacheSpec()
    router: RouterSpec = RouterSpec()
    topology: Literal["one_hop", "ensemble"] = Field(
        "one_hop",
        description="one_hop: the public model is one Python-backend model (checks, tokenizer, cache, router with "
        "fallbacks); ensemble: a Triton ensemble of a Python front step (checks, tokenizer) and the compute "
        "step, without tritonforge's cache and fallback chain",
    )
    ensemble_compute: Literal["runner", "native"] = Field(
        "runner",
        description="ensemble: the compute step is the in-process runner model (<name>_ort: any server, the local "
        "one included) or the primary variant's native model (a container with its backend)",
    )
    shadow: ShadowSpec = Field(
        default_factory=ShadowSpec, description="one_hop: sampled live requests compared with FP32, a drifting variant demoted"
    )

    @model_validator(mode="after")
    def _shadow_needs_the_router(self) -> ServingSpec:
        if self.shadow.fraction > 0 and self.topology != "one_hop":
            raise ValueError(
                "shadow: the ensemble topology has no router to demote a variant in; use topology: one_hop, or fraction: 0"
            )
        return self


class TokenizerSpec(_Strict):
    """Pre-processing step: a Python-backend tokenizer turning TYPE_STRING texts into the model's two inputs
    (token ids, attention mask), padded per request to the smallest length bucket that fits."""

    kind: Literal["tokenizer"] = "tokenizer"
    tokenizer_file: str = Field(description="tokenizer.json: a path, or 'module:callable' returning one")
    text_input: str = "text"
    max_length: int = Field(128, ge=1)
    buckets: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    max_text_bytes: int = Field(65536, ge=1)
    pad_id: int = 0
    sample_texts: str | None = Field(None, description="'module:callable' returning held-out texts (perf input data)")


# One variant entry of a spec: the options model of the converter its `kind` names (registered by the builder).
VariantSpec = Annotated[VariantBase, VARIANT_KINDS]
# The spec's source: the options model of the source kind its `kind` names (registered by the builder's sources).
SourceSpec = Annotated[SourceBase, SOURCE_KINDS]


class BuildSpec(_Strict):
    """A whole build: source model, its signature, data, and how to serve it."""

    # The source's and the variants' unions are made from the registries when a spec is first validated, after
    # the builder registered.
    model_config = ConfigDict(defer_build=True)

    name: str
    description: str = ""
    source: SourceSpec
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    max_batch_size: int = Field(ge=1, le=4096)
    export: ExportSpec = ExportSpec()
    validation: ValidationSpec
    calibration: CalibrationSpec | None = None
    variants: list[VariantSpec] = Field(default_factory=list, description="onnx_fp32 (the reference) is always built")
    int8_search: Int8SearchSpec = Int8SearchSpec()
    gate: GateSpec = GateSpec()
    timing: TimingSpec = TimingSpec()
    preprocess: TokenizerSpec | None = None
    serving: ServingSpec = ServingSpec()

    _base_dir: Path = PrivateAttr(default=Path("."))
    _spec_path: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _model_name(cls, v: str) -> str:
        if not MODEL_NAME.match(v):
            raise ValueError(f"model name {v!r} must match {MODEL_NAME.pattern}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> BuildSpec:
        names = [t.name for t in self.inputs + self.outputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tensor names must be unique across inputs and outputs: {dup}")
        for size in self.serving.dynamic_batching.preferred_batch_sizes + self.serving.warmup.batch_sizes:
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(f"batch size {size} in serving is outside 1..max_batch_size ({self.max_batch_size})")
        for size in self.timing.batch_sizes or []:
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(f"timing batch size {size} is outside 1..max_batch_size ({self.max_batch_size})")
        ids = [v.variant_id for v in self.variants]
        dup = sorted(
            {i for i in ids if ids.count(i) > 1}
            | ({"onnx_fp32"} & set(ids))
            | ({"onnx_int8"} & set(ids) if self.int8_search.enabled else set())
        )
        if dup:
            raise ValueError(
                f"variant ids must be unique (onnx_fp32 is always built; the INT8 search publishes onnx_int8): {dup}"
            )
        outputs = {t.name for t in self.outputs}
        unknown = sorted(set(self.gate.class_score_outputs or []) - outputs)
        if unknown:
            raise ValueError(f"gate.class_score_outputs names unknown outputs: {unknown}")
        unknown = sorted(set(self.gate.outputs) - outputs)
        if unknown:
            raise ValueError(f"gate.outputs names unknown outputs: {unknown}")
        if self.preprocess is not None:
            if len(self.inputs) != 2 or any(t.dtype != "int64" or t.shape != [-1] for t in self.inputs):
                raise ValueError("preprocess 'tokenizer' feeds two int64 inputs of shape [-1] (token ids, attention mask)")
            if not TENSOR_NAME.match(self.preprocess.text_input) or self.preprocess.text_input in names:
                raise ValueError(f"preprocess.text_input {self.preprocess.text_input!r} must be a new tensor name")
        needs_calibration = any(v.needs_calibration for v in self.variants) or self.int8_search.enabled
        if needs_calibration and self.calibration is None:
            raise ValueError("static INT8 variants and the INT8 search need a 'calibration' section (data other than validation)")
        return self

    @property
    def class_score_outputs(self) -> list[str]:
        """Outputs judged as class scores by the gate (see GateSpec.class_score_outputs and gate.outputs)."""
        declared = [n for n, g in self.gate.outputs.items() if g.kind == "class_scores"]
        if self.gate.class_score_outputs is not None:
            return list(dict.fromkeys([*self.gate.class_score_outputs, *declared]))
        if self.validation.data.labels is None:
            return declared
        first = next(
            (
                t.name
                for t in self.outputs
                if len(t.shape) == 1
                and t.dtype.startswith("float")
                and self.gate.outputs.get(t.name, OutputGateSpec()).kind in (None, "class_scores")
            ),
            None,
        )
        return list(dict.fromkeys(([first] if first else []) + declared))

    @property
    def public_inputs(self) -> list[TensorSpec]:
        """What clients send to the public model: texts when a tokenizer pre-processes, else the model's inputs."""
        if self.preprocess is None:
            return list(self.inputs)
        return [TensorSpec(name=self.preprocess.text_input, dtype="string", shape=[1])]

    @property
    def output_kinds(self) -> dict[str, str]:
        """What each output is, for the gate: its declared kind, else class scores, else one value per sample
        (a regression), else an embedding."""
        classes = set(self.class_score_outputs)
        out = {}
        for t in self.outputs:
            declared = self.gate.outputs.get(t.name)
            if declared is not None and declared.kind:
                out[t.name] = declared.kind
            elif t.name in classes:
                out[t.name] = "class_scores"
            elif all(d == 1 for d in t.shape):
                out[t.name] = "regression"
            else:
                out[t.name] = "embedding"
        return out

    @property
    def timing_batch_sizes(self) -> list[int]:
        return self.timing.batch_sizes or sorted({1, self.max_batch_size})

    @property
    def base_dir(self) -> Path:
        """Directory relative paths in the spec resolve against (the spec file's)."""
        return self._base_dir

    @property
    def spec_path(self) -> Path | None:
        return self._spec_path

    def resolve(self, path: Path) -> Path:
        """A spec path made absolute against the spec's directory."""
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    def resolve_ref(self, value: str, field: str) -> Path:
        """A file given as a path (relative to the spec) or as 'module:callable' returning a path."""
        path = Path(import_callable(value, self._base_dir, field)()) if CALLABLE_REF.match(value) else self.resolve(Path(value))
        if not path.is_file():
            raise SpecError(f"field '{field}': file not found: {path}")
        return path

    def canonical_json(self) -> str:
        """Stable JSON of the spec's content, for hashing."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


_KIND_REGISTRIES: tuple[KindRegistry[Any], ...] = (SOURCE_KINDS, VARIANT_KINDS)


def _is_kind_tag(part: Any) -> bool:
    return isinstance(part, str) and any(part in registry for registry in _KIND_REGISTRIES)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            part in ("function-after", "function-before") or str(part).startswith(("literal[", "function-")) or _is_kind_tag(part)
        ):  # the union's tag: the kind, already in the entry
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _error_loc(err: Any) -> tuple[Any, ...]:
    """Where an error is: a section whose `kind` is missing or unknown is wrong in its `kind` field."""
    loc = tuple(err["loc"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, str(err.get("ctx", {}).get("discriminator", "kind")).strip("'"))
    return loc


def _unwrap(annotation: Any) -> Any:
    """`X` from Annotated[X, ...] and X | None."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        args = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The fields the section at `loc` takes (loc as pydantic gives it, kind tags included), or none if unknown."""
    current: Any = BuildSpec
    for part in loc:
        registry = next((r for r in _KIND_REGISTRIES if _is_kind_tag(part) and part in r), None)
        if registry is not None:
            current = registry[part]
            continue
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, _Strict):
            if part not in current.model_fields:
                return []
            current = current.model_fields[part].annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, _Strict) else []


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """' did you mean 'max_queue_delay_us'?' for a misspelled field, else ''."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    close = closest(loc[-1], _fields_at(loc[:-1]))
    return f"; did you mean '{close}'?" if close else ""


def _error_message(err: Any) -> str:
    """Pydantic's message; a field a section does not take says which field is closest, and one a kind does not
    take also says which fields that kind takes."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        hint = _did_you_mean(tuple(err["loc"]))
        for part in err["loc"]:
            registry = next((r for r in _KIND_REGISTRIES if isinstance(part, str) and part in r), None)
            if registry is not None:
                fields = [f for f in registry[part].model_fields if f != "kind"]
                return f"{msg}: {registry.section} kind {part!r} takes {', '.join(fields) or 'no other field'}{hint}"
        return msg + hint
    return msg


def parse_spec(data: Any, *, source: str = "<spec>", base_dir: Path | None = None) -> BuildSpec:
    """Validate already-parsed YAML/JSON data as a BuildSpec; errors name `source` and each bad field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        spec = BuildSpec.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = _error_message(err)
            got = ""
            if err["type"] not in ("missing", "value_error") and "input" in err and not isinstance(err["input"], dict):
                got = f" (got {err['input']!r})"
            lines.append(f"  field '{_format_loc(_error_loc(err))}': {msg}{got}")
        raise SpecError(f"{source}: invalid build spec\n" + "\n".join(lines)) from None
    spec._base_dir = (base_dir or Path.cwd()).resolve()
    return spec


def _check_files(spec: BuildSpec, source: str) -> None:
    files: dict[str, Path | None] = {
        **{f"source.{name}": path for name, path in spec.source.file_fields().items()},
        "validation.data.npz": spec.validation.data.npz,
        "calibration.data.npz": spec.calibration.data.npz if spec.calibration else None,
    }
    for field, path in files.items():
        if path is not None and not spec.resolve(path).is_file():
            raise SpecError(f"{source}: field '{field}': file not found: {spec.resolve(path)}")


def load_spec(path: str | Path) -> BuildSpec:
    """Read, parse and validate a YAML build spec; every file it names must exist."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read: {e}") from None
    spec = parse_spec(data, source=str(path), base_dir=path.resolve().parent)
    spec._spec_path = path.resolve()
    _check_files(spec, str(path))
    return spec
