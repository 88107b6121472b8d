"""The declarative build spec: one YAML file per model, validated with errors that name file and field."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from builder import dtypes
from builder.errors import SpecError

MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
CALLABLE_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One input or output. `shape` is per item, without the batch dimension; -1 marks a dynamic dim."""

    name: str
    dtype: Literal[dtypes.NAMES]  # type: ignore[valid-type]
    shape: list[int] = Field(min_length=0)

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


class SourceSpec(_Strict):
    """Where the trained model comes from."""

    kind: Literal["pytorch", "torchscript", "exported_program", "onnx"]
    factory: str | None = Field(None, description="pytorch: 'module:callable' returning an nn.Module")
    factory_args: dict[str, Any] = Field(default_factory=dict)
    state_dict: Path | None = Field(None, description="pytorch: optional state_dict file (loaded weights_only)")
    path: Path | None = Field(None, description="torchscript / exported_program / onnx file")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> SourceSpec:
        if self.kind == "pytorch":
            if not self.factory:
                raise ValueError("kind 'pytorch' needs 'factory: module:callable'")
            if not CALLABLE_REF.match(self.factory):
                raise ValueError(f"factory {self.factory!r} must be 'module:callable'")
            if self.path is not None:
                raise ValueError("kind 'pytorch' takes 'factory' (and 'state_dict'), not 'path'")
        else:
            if self.path is None:
                raise ValueError(f"kind {self.kind!r} needs 'path'")
            if self.factory or self.state_dict:
                raise ValueError(f"kind {self.kind!r} takes 'path' only, not 'factory'/'state_dict'")
        return self


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


class DynamicBatchingSpec(_Strict):
    """Triton's dynamic batcher on the models that compute."""

    enabled: bool = True
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    max_queue_delay_us: int = Field(500, ge=0)


class WarmupSpec(_Strict):
    """Warm-up requests Triton sends before a model is READY (zero data, one per batch size)."""

    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    dynamic_dim: int = Field(1, ge=1, description="value used for -1 dims in warm-up tensors")


class ServingSpec(_Strict):
    """How the models are served."""

    dynamic_batching: DynamicBatchingSpec = DynamicBatchingSpec()
    instance_count: int = Field(1, ge=1, le=64)
    warmup: WarmupSpec = WarmupSpec()
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads per instance (0: runtime default)")


class BuildSpec(_Strict):
    """A whole build: source model, its signature, data, and how to serve it."""

    name: str
    description: str = ""
    source: SourceSpec
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    max_batch_size: int = Field(ge=1, le=4096)
    export: ExportSpec = ExportSpec()
    validation: ValidationSpec
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
        return self

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

    def canonical_json(self) -> str:
        """Stable JSON of the spec's content, for hashing."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("literal[", "function-")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse_spec(data: Any, *, source: str = "<spec>", base_dir: Path | None = None) -> BuildSpec:
    """Validate already-parsed YAML/JSON data as a BuildSpec; errors name `source` and each bad field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        spec = BuildSpec.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            got = ""
            if err["type"] not in ("missing", "value_error") and "input" in err and not isinstance(err["input"], dict):
                got = f" (got {err['input']!r})"
            lines.append(f"  field '{_format_loc(err['loc'])}': {msg}{got}")
        raise SpecError(f"{source}: invalid build spec\n" + "\n".join(lines)) from None
    spec._base_dir = (base_dir or Path.cwd()).resolve()
    return spec


def _check_files(spec: BuildSpec, source: str) -> None:
    files = {
        "source.state_dict": spec.source.state_dict,
        "source.path": spec.source.path,
        "validation.data.npz": spec.validation.data.npz,
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
