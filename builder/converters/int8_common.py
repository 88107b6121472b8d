"""Shared by the INT8 converters: ONNX Runtime's quantization pre-processing (cached per build) and
calibration data readers."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from builder.data import Dataset

DEFAULT_OP_TYPES = ["MatMul", "Gemm", "Conv"]


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

    out = work_dir / "int8_preprocessed.onnx"
    if out.exists():
        return out
    try:
        with quiet():
            quant_pre_process(str(fp32_onnx), str(out), skip_symbolic_shape=True)
    except Exception as e:
        notes.append(f"quantization pre-processing failed ({type(e).__name__}: {e}); quantizing the raw graph")
        shutil.copyfile(fp32_onnx, out)
    return out


class DatasetReader(CalibrationDataReader):
    """Feeds calibration batches to ONNX Runtime's calibrators."""

    def __init__(self, data: Dataset, input_names: list[str]) -> None:
        self._batches = [{n: np.ascontiguousarray(b[n]) for n in input_names} for b in data]
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


def same_shapes(data: Dataset) -> bool:
    """True if every calibration batch has the same per-item shapes (histogram calibrators need it)."""
    shapes = {tuple((k, v.shape[1:]) for k, v in sorted(b.items())) for b in data}
    return len(shapes) == 1
