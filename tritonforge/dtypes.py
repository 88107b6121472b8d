"""One table of tensor element types: spec name <-> numpy <-> Triton config enum <-> wire name <-> ONNX."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from tritonforge.errors import closest as closest_name


@dataclass(frozen=True)
class DType:
    """One element type as every layer spells it."""

    name: str  # as written in a build spec
    numpy: np.dtype
    triton: str  # model_config_pb2.DataType name
    wire: str  # the KServe/gRPC datatype string (tritonclient, perf_analyzer)
    onnx: int  # onnx.TensorProto element type


_TABLE = [
    DType("float32", np.dtype(np.float32), "TYPE_FP32", "FP32", TensorProto.FLOAT),
    DType("float16", np.dtype(np.float16), "TYPE_FP16", "FP16", TensorProto.FLOAT16),
    DType("float64", np.dtype(np.float64), "TYPE_FP64", "FP64", TensorProto.DOUBLE),
    DType("int8", np.dtype(np.int8), "TYPE_INT8", "INT8", TensorProto.INT8),
    DType("int16", np.dtype(np.int16), "TYPE_INT16", "INT16", TensorProto.INT16),
    DType("int32", np.dtype(np.int32), "TYPE_INT32", "INT32", TensorProto.INT32),
    DType("int64", np.dtype(np.int64), "TYPE_INT64", "INT64", TensorProto.INT64),
    DType("uint8", np.dtype(np.uint8), "TYPE_UINT8", "UINT8", TensorProto.UINT8),
    DType("bool", np.dtype(np.bool_), "TYPE_BOOL", "BOOL", TensorProto.BOOL),
    DType("string", np.dtype(np.object_), "TYPE_STRING", "BYTES", TensorProto.STRING),
]

BY_NAME = {d.name: d for d in _TABLE}
BY_ONNX = {d.onnx: d for d in _TABLE}
NAMES = tuple(BY_NAME)

# Other spellings of the spec's names, any case: Triton's config enum (TYPE_FP32), its wire name (FP32) and the
# short name (fp32), and the C names PyTorch and ONNX users write (half, double, long). Never 'float' or 'int':
# numpy reads those as 64-bit, PyTorch as 32-bit.
ALIASES: dict[str, str] = {
    **{spelling.lower(): d.name for d in _TABLE for spelling in (d.name, d.triton, d.wire, d.triton.removeprefix("TYPE_"))},
    "half": "float16",
    "double": "float64",
    "long": "int64",
    "str": "string",
}


def canonical(name: str) -> str | None:
    """The spec name of a dtype however it is spelled ('TYPE_FP32', 'FP32', 'fp32' -> 'float32'), else None."""
    return ALIASES.get(name.strip().lower())


_AMBIGUOUS = {"int": ["int32", "int64"], "float": ["float32", "float64"], "uint": ["uint8"]}


def closest(name: str) -> list[str]:
    """The spec dtype names an unknown spelling probably means ('float33' -> ['float32'], 'int' -> ['int32',
    'int64']), or none."""
    key = name.strip().lower()
    if key in _AMBIGUOUS:
        return list(_AMBIGUOUS[key])
    match = closest_name(key, list(ALIASES))
    return [ALIASES[match]] if match else []


def by_name(name: str) -> DType:
    """The DType for a spec dtype name such as 'float32'."""
    return BY_NAME[name]


def from_numpy(dtype: np.dtype) -> DType:
    """The DType for a numpy dtype; bytes and str arrays count as 'string'."""
    dtype = np.dtype(dtype)
    if dtype.kind in ("O", "S", "U"):
        return BY_NAME["string"]
    for d in _TABLE:
        if d.numpy == dtype:
            return d
    raise KeyError(f"no Triton type for numpy dtype {dtype}")
