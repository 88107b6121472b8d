"""Whether a conversion changed what its name says: a variant that converted nothing is never gated, timed or
published under a precision it does not have (a tree ensemble has no MatMul to quantize, and the FP16
converter only wraps it in casts)."""

from __future__ import annotations

import contextlib
from pathlib import Path

QUANTIZED_OPS = {
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "QLinearConv",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QAttention",
    "QGemm",
    "MatMulIntegerToFloat",
    "MatMulNBits",
}


# Ops that move or relabel data without arithmetic: float16 passing through them converts nothing.
DATA_MOVEMENT = {
    "Cast",
    "CastLike",
    "Identity",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "Shape",
    "Expand",
    "Tile",
    "Pad",
    "Constant",
    "ConstantOfShape",
}


def _load(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False)


def has_int8(path: Path) -> bool:
    """The graph holds at least one quantized or integer-arithmetic node."""
    return any(n.op_type in QUANTIZED_OPS for n in _load(path).graph.node)


def has_fp16_compute(path: Path) -> bool:
    """A node that computes (not only moves data) reads or writes float16, or a weight is float16."""
    import onnx

    model = _load(path)
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return True
    with contextlib.suppress(Exception):  # types stay unknown where inference fails; unknown is not float16
        model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    half = {
        v.name
        for v in [*graph.input, *graph.output, *graph.value_info]
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    }
    return any(n.op_type not in DATA_MOVEMENT and half & {*n.input, *n.output} for n in graph.node)


def op_summary(path: Path, most: int = 6) -> str:
    """The graph's computing op types, for a reason line: 'TreeEnsembleClassifier'."""
    ops = list(dict.fromkeys(n.op_type for n in _load(path).graph.node if n.op_type not in DATA_MOVEMENT))
    return ", ".join(ops[:most]) + (f" and {len(ops) - most} more" if len(ops) > most else "") or "no ops"
