"""Shared by the INT8 converters: ONNX Runtime's quantization pre-processing (cached per build) and
calibration data readers."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tritonforge.serving.batching import Batch

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset

DEFAULT_OP_TYPES = ["MatMul", "Gemm", "Conv", "Attention"]  # Attention: com.microsoft's, in a fused graph


@contextlib.contextmanager
def quiet():
    """ONNX Runtime's quantization tools print progress and warnings; keep them out of the build output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def preprocessed(fp32_onnx: Path, work_dir: Path, notes: list[str]) -> Path:
    """quant_pre_process output (shape inference + basic fusions), computed once per build and reused.

    Symbolic shape inference is skipped: it fails on transformer graphs exported by torch.onnx.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work_dir / f"int8_preprocessed_{fp32_onnx.stem}.onnx"  # one per source graph (exported, fused)
    if out.exists():
        return out
    try:
        with quiet():
            quant_pre_process(str(fp32_onnx), str(out), skip_symbolic_shape=True)
    except Exception as e:
        notes.append(f"quantization pre-processing failed ({type(e).__name__}: {e}); quantizing the raw graph")
        shutil.copyfile(fp32_onnx, out)
    drop_initializer_value_info(out)
    return out


def drop_initializer_value_info(path: Path) -> None:
    """Remove value_info entries that describe initializers (torch.onnx writes them; they add nothing).

    ONNX Runtime's quantizer rewrites weights (a Gemm's transposed B, for one) without updating them, and
    onnx >= 1.23 then refuses the model: "Inferred shape and existing shape differ in dimension 0: (64) vs
    (128)" for the digits MLP with onnx 1.23 and onnxruntime 1.30.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # external weights stay where they are
    weights = {i.name for i in model.graph.initializer}
    keep = [v for v in model.graph.value_info if v.name not in weights]
    if len(keep) == len(model.graph.value_info):
        return
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    onnx.save(model, str(path))


@lru_cache(maxsize=1)
def _reader_class():
    from onnxruntime.quantization import CalibrationDataReader  # imported when a calibration runs, not before

    class DatasetReader(CalibrationDataReader):
        """Feeds calibration batches to ONNX Runtime's calibrators."""

        def __init__(self, data: Iterable[Batch], input_names: list[str]) -> None:
            self._batches = [{n: np.ascontiguousarray(b[n]) for n in input_names} for b in data]
            self._it = iter(self._batches)

        def get_next(self):
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(self._batches)

    return DatasetReader


def DatasetReader(data: Iterable[Batch], input_names: list[str]):  # noqa: N802 (a factory standing in for the class)
    """A CalibrationDataReader over `data`'s batches."""
    return _reader_class()(data, input_names)


# Nodes ONNX Runtime's dynamic quantization writes in place of a quantized MatMul, Gemm or Conv
INTEGER_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QLinearConv", "QAttention"}


def quantized_nodes(path: Path) -> set[str]:
    """Names (as in the float graph) of the nodes of a quantized model at `path` that INT8 reaches: the integer
    ops of dynamic quantization (`<node>_quant`; a Gemm is first turned into `<gemm>_MatMul`), and in a Q/DQ
    graph each node with an input that is a quantized activation (Q then DQ of a computed tensor, not only of a
    weight; a Transpose between two quantized MatMuls is one too)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def quantized_activation(name: str) -> bool:
        dq = producer.get(name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in weights

    names = set()
    for n in graph.node:
        if n.op_type in INTEGER_OPS:
            name = n.name.removesuffix("_quant")
            names.update({name, name.removesuffix("_MatMul")})
        elif n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(map(quantized_activation, n.input)):
            names.add(n.name)
    return names


def equal_batches(data: Dataset) -> list[dict[str, np.ndarray]]:
    """`data`'s batches, or, if their batch sizes differ (a last, shorter batch), each item as a batch of one:
    ONNX Runtime's histogram calibrators stack every batch's activations into one array."""
    batches = list(data)
    if len({len(next(iter(b.values()))) for b in batches}) <= 1:
        return batches
    return [{k: v[i : i + 1] for k, v in b.items()} for b in batches for i in range(len(next(iter(b.values()))))]


def same_shapes(data: Dataset) -> bool:
    """True if every calibration batch has the same per-item shapes (histogram calibrators need it)."""
    shapes = {tuple((k, v.shape[1:]) for k, v in sorted(b.items())) for b in data}
    return len(shapes) == 1
