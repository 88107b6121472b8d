"""Model metadata as the client needs it, and the checks run on inputs before anything is sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritonforge.client.errors import InputError

# KServe datatype -> numpy dtype. BYTES takes str/bytes (object, 'U' or 'S' arrays).
WIRE_TO_NUMPY: dict[str, np.dtype] = {
    "FP32": np.dtype(np.float32),
    "FP16": np.dtype(np.float16),
    "FP64": np.dtype(np.float64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "BOOL": np.dtype(np.bool_),
    "BYTES": np.dtype(np.object_),
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the server declares it; `shape` includes the batch dim (-1) when the model batches."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What the client checks requests against."""

    name: str
    version: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    max_batch_size: int
    # tensors whose config reshapes them (a per-sample scalar travels as [1] and the model sees []): name -> the
    # per-sample shape the model takes or gives; the client accepts and returns that shape
    reshapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, metadata: Mapping, config: Mapping) -> ModelInfo:
        def tensors(items: Iterable[Mapping[str, Any]]) -> dict[str, TensorInfo]:
            return {t["name"]: TensorInfo(t["name"], t["datatype"], tuple(int(d) for d in t.get("shape", []))) for t in items}

        versions = metadata.get("versions") or [""]
        return cls(
            name=metadata["name"],
            version=str(versions[-1]),
            inputs=tensors(metadata.get("inputs", [])),
            outputs=tensors(metadata.get("outputs", [])),
            max_batch_size=int(config.get("max_batch_size", 0) or 0),
            reshapes={
                t["name"]: tuple(int(d) for d in t["reshape"].get("shape", []))
                for t in [*config.get("input", []), *config.get("output", [])]
                if "reshape" in t
            },
        )

    def as_model_gives(self, name: str, arr: np.ndarray) -> np.ndarray:
        """An output as the model gives it: a reshaped output (a per-sample scalar) loses its wire dim."""
        shape = self.reshapes.get(name)
        if shape is None or arr is None or self.max_batch_size == 0:
            return arr
        return arr.reshape(len(arr), *shape)

    def prepare(self, inputs: Mapping[str, object], *, reject_nonfinite: bool = True) -> dict[str, np.ndarray]:
        """Check `inputs` against the metadata and return them as arrays ready to send.

        Raises InputError naming the tensor: unknown or missing name, wrong dtype, wrong rank or dim,
        empty batch or one over max_batch_size, batch sizes that disagree, NaN or Inf values.
        """
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise InputError(f"model '{self.name}' has no input {unknown[0]!r}; its inputs are: {', '.join(self.inputs)}")
        missing = [n for n in self.inputs if n not in inputs]
        if missing:
            raise InputError(f"model '{self.name}': input {missing[0]!r} is missing")
        arrays: dict[str, np.ndarray] = {}
        batch_sizes: dict[str, int] = {}
        for name, info in self.inputs.items():
            arr = _as_array(inputs[name], info, self.name)
            arr = self._as_sent(arr, info)
            _check_shape(arr, info, self)
            if self.max_batch_size > 0:
                batch_sizes[name] = arr.shape[0]
            if reject_nonfinite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = int((~np.isfinite(arr)).sum())
                raise InputError(f"model '{self.name}' input {name!r}: {bad} value(s) are NaN or Inf")
            arrays[name] = arr
        if len(set(batch_sizes.values())) > 1:
            raise InputError(f"model '{self.name}': inputs disagree on batch size: {batch_sizes}")
        return arrays

    def _as_sent(self, arr: np.ndarray, info: TensorInfo) -> np.ndarray:
        """A reshaped input given in the model's own shape ([batch] for a per-sample scalar) gets its wire dims."""
        shape = self.reshapes.get(info.name)
        wire = info.shape[1:] if self.max_batch_size > 0 else info.shape
        if shape is None or self.max_batch_size == 0 or -1 in wire or arr.shape[1:] != shape:
            return arr
        return arr.reshape(len(arr), *wire)


def _as_array(value: object, info: TensorInfo, model: str) -> np.ndarray:
    want = WIRE_TO_NUMPY.get(info.datatype)
    if want is None:
        raise InputError(f"model '{model}' input {info.name!r}: datatype {info.datatype} is not supported by this client")
    if info.datatype == "BYTES":
        arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        if arr.dtype.kind in ("U", "S"):
            arr = arr.astype(object)
        if arr.dtype != object:
            raise InputError(f"model '{model}' input {info.name!r} takes strings (BYTES); got dtype {arr.dtype}")
        bad = next((x for x in arr.ravel() if not isinstance(x, (str, bytes))), None)
        if bad is not None:
            raise InputError(f"model '{model}' input {info.name!r} takes strings (BYTES); found a {type(bad).__name__}")
        return arr
    if not isinstance(value, np.ndarray):
        raise InputError(f"model '{model}' input {info.name!r}: expected a numpy array of {want}, got {type(value).__name__}")
    if value.dtype != want:
        raise InputError(
            f"model '{model}' input {info.name!r}: dtype {value.dtype} does not match the model's {info.datatype} "
            f"({want}); convert with .astype(np.{want.name})"
        )
    return np.ascontiguousarray(value)


def _check_shape(arr: np.ndarray, info: TensorInfo, model: ModelInfo) -> None:
    expected = info.shape
    if arr.ndim != len(expected):
        raise InputError(
            f"model '{model.name}' input {info.name!r}: shape {list(arr.shape)} has rank {arr.ndim}; "
            f"the model expects {list(expected)} (-1 = any)"
        )
    for axis, (got, want) in enumerate(zip(arr.shape, expected, strict=True)):
        if want != -1 and got != want:
            raise InputError(
                f"model '{model.name}' input {info.name!r}: dim {axis} is {got}, the model expects {want} "
                f"(shape {list(arr.shape)} vs {list(expected)})"
            )
    if model.max_batch_size > 0:
        batch = arr.shape[0]
        if batch == 0:
            raise InputError(f"model '{model.name}' input {info.name!r}: empty batch (batch size 0)")
        if batch > model.max_batch_size:
            raise InputError(
                f"model '{model.name}' input {info.name!r}: batch size {batch} exceeds max_batch_size "
                f"{model.max_batch_size}; split the request"
            )
