"""The settings a build gives its Python-backend models, and the one place they are read.

The build dumps them from the spec (tritonforge/builder/serving_graph.py) as JSON into the model config's
parameter `tritonforge`; the models load them here and use attributes only: no defaults on this side. Reading is
strict: a key this code does not know, or one it needs and does not find, is a SettingsError naming the key and
the model (a repository written by another tritonforge, or a config edited by hand), never a silent default.

Standard library only: this module is copied into the repository with the rest of the serving package.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

PARAMETER = "tritonforge"  # the model config parameter that carries the settings, as JSON


class SettingsError(ValueError):
    """Settings this code cannot read: a key unknown or missing, or a value of the wrong kind."""


def _where(model: str, path: str) -> str:
    return f"{model}: serving settings" + (f" '{path}'" if path else "")


def _object(data: object, cls: type, model: str, path: str) -> dict[str, Any]:
    """`data` as the JSON object of dataclass `cls`: exactly its fields' keys, or a SettingsError."""
    if not isinstance(data, dict):
        raise SettingsError(f"{_where(model, path)}: expected a JSON object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(k for k in data if k not in names)
    if unknown:
        raise SettingsError(
            f"{_where(model, path)}: unknown key '{unknown[0]}' (this serving code reads {', '.join(names)}); "
            "the repository was written by another tritonforge: rebuild it"
        )
    missing = [n for n in names if n not in data]
    if missing:
        raise SettingsError(
            f"{_where(model, path)}: missing key '{missing[0]}'; the repository was written by another tritonforge: rebuild it"
        )
    return dict(data)


def _list(data: object, model: str, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise SettingsError(f"{_where(model, path)}: expected a JSON list, got {type(data).__name__}")
    return data


def _json(value: Any) -> Any:
    """A settings value as plain JSON data: dataclasses as objects, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class TensorSignature:
    """A tensor as the serving logic reads it: `dims` per item, without the batch dim (-1: dynamic), `dim_names`
    naming its -1 dims in order (tensors sharing a name must agree on that length), `range` [low, high] or None."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    dim_names: tuple[str, ...]
    range: tuple[float, float] | None

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "tensor") -> TensorSignature:
        d = _object(data, cls, model, path)
        bounds = d["range"]
        if bounds is not None:
            pair = _list(bounds, model, f"{path}.range")
            if len(pair) != 2:
                raise SettingsError(f"{_where(model, path + '.range')}: expected [low, high], got {pair}")
            bounds = (pair[0], pair[1])
        return cls(
            name=d["name"],
            dtype=d["dtype"],
            dims=tuple(_list(d["dims"], model, f"{path}.dims")),
            dim_names=tuple(_list(d["dim_names"], model, f"{path}.dim_names")),
            range=bounds,
        )


@dataclass(frozen=True)
class BlsRungSettings:
    """A published variant in its native backend, called through BLS at `version`; `inputs`: name -> Triton dtype
    (TYPE_FP32, ...) the variant takes."""

    model: str
    version: int
    inputs: dict[str, str]
    kind: Literal["bls"] = "bls"

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "rung") -> BlsRungSettings:
        d = _object(data, cls, model, path)
        if not isinstance(d["inputs"], dict):
            raise SettingsError(f"{_where(model, path + '.inputs')}: expected a JSON object")
        return cls(model=d["model"], version=d["version"], inputs=dict(d["inputs"]))


@dataclass(frozen=True)
class InProcessRungSettings:
    """An ONNX variant run in-process by ONNX Runtime: `file` in the version directory, `name` the rung's name."""

    name: str
    file: str
    kind: Literal["onnxruntime"] = "onnxruntime"

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "rung") -> InProcessRungSettings:
        d = _object(data, cls, model, path)
        return cls(name=d["name"], file=d["file"])


RungSettings = BlsRungSettings | InProcessRungSettings
RUNG_KINDS: dict[str, type[BlsRungSettings] | type[InProcessRungSettings]] = {
    "bls": BlsRungSettings,
    "onnxruntime": InProcessRungSettings,
}


def rung_from_json(data: object, model: str, path: str = "rung") -> RungSettings:
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in RUNG_KINDS:
        raise SettingsError(f"{_where(model, path)}: unknown rung kind {kind!r} (this serving code runs {', '.join(RUNG_KINDS)})")
    return RUNG_KINDS[kind].from_json(data, model, path)


@dataclass(frozen=True)
class CacheSettings:
    """tritonforge's response cache (the spec's serving.cache, for the kinds the public model serves)."""

    kind: Literal["memory", "redis"]
    placement: Literal["before_preprocess", "after_preprocess"]
    redis_url: str
    redis_url_env: str
    password_env: str
    secret_env: str
    redis_private: bool
    ssl_ca_certs: str
    ssl_certfile: str
    ssl_keyfile: str
    ttl_s: float
    key_prefix: str
    compression_level: int
    max_value_bytes: int
    max_entry_bytes: int
    memory_max_bytes: int
    max_pending_writes: int
    socket_timeout_ms: float
    bypass_seconds: float
    max_connections: int

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "cache") -> CacheSettings:
        d = _object(data, cls, model, path)
        if d["kind"] not in ("memory", "redis"):
            raise SettingsError(f"{_where(model, path + '.kind')}: unknown cache kind {d['kind']!r} (memory or redis)")
        return cls(**d)


@dataclass(frozen=True)
class RouterSettings:
    breaker_failures: int
    breaker_seconds: float
    rung_timeout_ms: float

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "router") -> RouterSettings:
        return cls(**_object(data, cls, model, path))


@dataclass(frozen=True)
class PreprocessSettings:
    """The spec's preprocess section (a tokenizer), with `file` the tokenizer.json in the version directory."""

    kind: str
    tokenizer_file: str
    text_input: str
    max_length: int
    buckets: tuple[int, ...]
    max_text_bytes: int
    pad_id: int
    sample_texts: str | None
    file: str

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "preprocess") -> PreprocessSettings:
        d = _object(data, cls, model, path)
        return cls(**{**d, "buckets": tuple(_list(d["buckets"], model, f"{path}.buckets"))})


@dataclass(frozen=True)
class WarmupSettings:
    """The in-process rungs' warm-up at load: one batch per size, `dynamic_dim` for every -1 dim."""

    batch_sizes: tuple[int, ...]
    dynamic_dim: int

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "warmup") -> WarmupSettings:
        d = _object(data, cls, model, path)
        return cls(batch_sizes=tuple(_list(d["batch_sizes"], model, f"{path}.batch_sizes")), dynamic_dim=d["dynamic_dim"])


@dataclass(frozen=True)
class OutputThresholds:
    """One output's own gate thresholds (None: the gate's)."""

    min_cosine: float | None
    min_top1_agreement: float | None
    max_accuracy_drop: float | None
    max_mean_rel: float | None
    max_abs: float | None

    @classmethod
    def from_json(cls, data: object, model: str, path: str) -> OutputThresholds:
        return cls(**_object(data, cls, model, path))


@dataclass(frozen=True)
class GateSettings:
    """The spec's gate as the served model reads it: thresholds, each output's own (`outputs`) and what each output
    is (`kinds`), with the validation tolerance (`atol`, `rtol`) the comparison's figures use. Read by gate.judge
    as the build reads the spec's GateSpec."""

    min_cosine: float
    min_top1_agreement: float
    max_accuracy_drop: float
    max_mean_rel: float
    max_abs: float | None
    outputs: dict[str, OutputThresholds]
    kinds: dict[str, str]
    atol: float
    rtol: float

    def threshold(self, output: str, name: str) -> Any:
        """`output`'s own threshold `name`, else the gate's (only max_abs may be None)."""
        own = self.outputs.get(output)
        value = getattr(own, name) if own is not None else None
        return getattr(self, name) if value is None else value

    @property
    def class_outputs(self) -> list[str]:
        return [n for n, k in self.kinds.items() if k == "class_scores"]

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "shadow.gate") -> GateSettings:
        d = _object(data, cls, model, path)
        for key in ("outputs", "kinds"):
            if not isinstance(d[key], dict):
                raise SettingsError(f"{_where(model, f'{path}.{key}')}: expected a JSON object")
        outputs = {n: OutputThresholds.from_json(o, model, f"{path}.outputs.{n}") for n, o in d["outputs"].items()}
        return cls(**{**d, "outputs": outputs, "kinds": dict(d["kinds"])})


@dataclass(frozen=True)
class ShadowSettings:
    """The spec's serving.shadow, with the FP32 reference's file in the version directory (`reference_file`) and
    the gate it judges by."""

    fraction: float
    window: int
    min_samples: int
    max_pending: int
    probation_s: float | None
    confidence: float  # top-1 agreement is judged by its upper bound at this confidence (gate.judge)
    reference_file: str
    gate: GateSettings

    @property
    def judged_after(self) -> int:
        """Samples a window holds before it is judged: `min_samples`, and at least enough that one disagreement
        alone cannot break a top-1 agreement threshold below 1 (201 for 0.995: one in 200 reads 0.995)."""
        needed = self.min_samples
        for output in self.gate.class_outputs:
            t = self.gate.threshold(output, "min_top1_agreement")
            if t < 1:
                needed = max(needed, math.floor(1 / (1 - t) + 1e-9) + 1)
        return needed

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "shadow") -> ShadowSettings:
        d = _object(data, cls, model, path)
        return cls(**{**d, "gate": GateSettings.from_json(d["gate"], model, f"{path}.gate")})


def _tensors(data: object, model: str, path: str) -> tuple[TensorSignature, ...]:
    return tuple(TensorSignature.from_json(t, model, f"{path}[{i}]") for i, t in enumerate(_list(data, model, path)))


def _files(data: object, model: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise SettingsError(f"{_where(model, 'files')}: expected a JSON object")
    return dict(data)


@dataclass(frozen=True)
class PublicSettings:
    """The public model's settings: `inputs` what clients send, `model_inputs` what the rungs take (the same unless
    a tokenizer pre-processes), `rungs` in the router's order, `files` the sha256 of every file the build placed
    in its version directory (path -> sha256)."""

    public: str
    cache_version: str
    inputs: tuple[TensorSignature, ...]
    model_inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    max_request_bytes: int
    reject_nonfinite: bool
    intra_op_threads: int
    preprocess: PreprocessSettings | None
    cache: CacheSettings | None
    router: RouterSettings
    rungs: tuple[RungSettings, ...]
    metrics_interval_ms: int
    warmup: WarmupSettings
    shadow: ShadowSettings | None
    files: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "") -> PublicSettings:
        d = _object(data, cls, model, path)
        rungs = _list(d["rungs"], model, "rungs")
        return cls(
            public=d["public"],
            cache_version=d["cache_version"],
            inputs=_tensors(d["inputs"], model, "inputs"),
            model_inputs=_tensors(d["model_inputs"], model, "model_inputs"),
            outputs=_tensors(d["outputs"], model, "outputs"),
            max_request_bytes=d["max_request_bytes"],
            reject_nonfinite=d["reject_nonfinite"],
            intra_op_threads=d["intra_op_threads"],
            preprocess=None if d["preprocess"] is None else PreprocessSettings.from_json(d["preprocess"], model),
            cache=None if d["cache"] is None else CacheSettings.from_json(d["cache"], model),
            router=RouterSettings.from_json(d["router"], model),
            rungs=tuple(rung_from_json(r, model, f"rungs[{i}]") for i, r in enumerate(rungs)),
            metrics_interval_ms=d["metrics_interval_ms"],
            warmup=WarmupSettings.from_json(d["warmup"], model),
            shadow=None if d["shadow"] is None else ShadowSettings.from_json(d["shadow"], model),
            files=_files(d["files"], model),
        )


@dataclass(frozen=True)
class RunnerSettings:
    """The runner model's settings: the ONNX `file` it runs (variant `variant`), and `files` as the public model's."""

    file: str
    variant: str
    intra_op_threads: int
    files: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "") -> RunnerSettings:
        d = _object(data, cls, model, path)
        return cls(file=d["file"], variant=d["variant"], intra_op_threads=d["intra_op_threads"], files=_files(d["files"], model))


@dataclass(frozen=True)
class FrontSettings:
    """The ensemble's first step (serving.topology: ensemble): the input checks and the tokenizer of the public
    model `front`, its outputs the compute step's inputs; `files` as the public model's."""

    front: str
    inputs: tuple[TensorSignature, ...]
    model_inputs: tuple[TensorSignature, ...]
    max_request_bytes: int
    reject_nonfinite: bool
    preprocess: PreprocessSettings | None
    files: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return dict(_json(self))

    @classmethod
    def from_json(cls, data: object, model: str, path: str = "") -> FrontSettings:
        d = _object(data, cls, model, path)
        return cls(
            front=d["front"],
            inputs=_tensors(d["inputs"], model, "inputs"),
            model_inputs=_tensors(d["model_inputs"], model, "model_inputs"),
            max_request_bytes=d["max_request_bytes"],
            reject_nonfinite=d["reject_nonfinite"],
            preprocess=None if d["preprocess"] is None else PreprocessSettings.from_json(d["preprocess"], model),
            files=_files(d["files"], model),
        )


Settings = PublicSettings | RunnerSettings | FrontSettings
S = TypeVar("S", PublicSettings, RunnerSettings, FrontSettings)


def dumps(settings: Settings) -> str:
    """The parameter's text: compact JSON, keys sorted (a build writes the same bytes for the same settings)."""
    return json.dumps(settings.to_json(), sort_keys=True, separators=(",", ":"))


def loads(text: str, model: str) -> Settings:
    """Any kind of settings from the parameter's text: the public model's carry `public`, the ensemble front's
    `front`, the runner's neither."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SettingsError(f"{_where(model, '')}: not JSON: {e}") from None
    if isinstance(data, dict) and "public" in data:
        return PublicSettings.from_json(data, model)
    if isinstance(data, dict) and "front" in data:
        return FrontSettings.from_json(data, model)
    return RunnerSettings.from_json(data, model)


def from_model_config(model_config: Mapping[str, Any], model: str, kind: type[S]) -> S:
    """The settings of `kind` in a model config as Triton hands it to a Python model (JSON, parsed)."""
    try:
        text = model_config["parameters"][PARAMETER]["string_value"]
    except (KeyError, TypeError):
        raise SettingsError(f"{model}: its config has no '{PARAMETER}' parameter (the settings its build writes)") from None
    settings = loads(text, model)
    if not isinstance(settings, kind):
        raise SettingsError(f"{_where(model, '')}: these are {type(settings).__name__}, not {kind.__name__}")
    return settings
