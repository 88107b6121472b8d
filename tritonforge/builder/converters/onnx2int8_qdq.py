"""FP32 ONNX -> INT8 QDQ graph with static calibration (MinMax, Entropy or Percentile).

Symmetric INT8 activations and weights, the form TensorRT's explicit quantization takes; ONNX Runtime runs it
on CPU too. Calibration data comes from the spec's `calibration` section, never the validation data.

    python -m tritonforge.builder.converters.onnx2int8_qdq SPEC FP32.onnx OUT.onnx [--options '{"calibration_method": "entropy"}']
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from tritonforge.builder.converters.base import ConversionJob, run_alone
from tritonforge.builder.converters.int8_common import (
    DEFAULT_OP_TYPES,
    DatasetReader,
    equal_batches,
    preprocessed,
    quiet,
    same_shapes,
)
from tritonforge.builder.converters.onnx2int8_dynamic import Int8Converter, Int8Options
from tritonforge.errors import DataError
from tritonforge.serving.batching import Batch
from tritonforge.spec.base import CALIBRATION_METHODS

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset


class CalibratedOptions(Int8Options):
    """INT8 with activation scales calibrated on the spec's calibration data."""

    needs_calibration: ClassVar[bool] = True

    calibration_method: Literal[CALIBRATION_METHODS] = "minmax"  # type: ignore[valid-type]
    percentile: float = Field(99.999, gt=90, le=100)


def quantize_qdq(
    src: Path,
    dst: Path,
    calibration: Dataset,
    input_names: list[str],
    method: str = "minmax",
    per_channel: bool = True,
    op_types: list[str] | None = None,
    exclude_nodes: list[str] | None = None,
    percentile: float = 99.999,
) -> None:
    """Static QDQ quantization of `src` into `dst`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method != "minmax" and not same_shapes(calibration):
        raise DataError(
            f"{method} calibration needs calibration batches of one shape; pad the calibration data "
            "to one length (MinMax accepts varying shapes)"
        )
    feed: Iterable[Batch] = equal_batches(calibration) if method != "minmax" else calibration
    with quiet():
        quantize_static(
            str(src),
            str(dst),
            DatasetReader(feed, input_names),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types or DEFAULT_OP_TYPES,
            nodes_to_exclude=exclude_nodes or None,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibPercentile": percentile},
        )


def quantize_job(job: ConversionJob, out: Path, per_channel: bool | None = None) -> Path:
    """The job's FP32 graph as static Q/DQ INT8 in `out`, with the variant's calibration settings."""
    if job.calibration is None:
        raise DataError(f"{job.variant.kind} needs the spec's 'calibration' data")
    v = job.options(CalibratedOptions)
    src = preprocessed(job.fp32_onnx, job.work_dir, job.notes)
    quantize_qdq(
        src,
        out,
        job.calibration,
        [t.name for t in job.spec.inputs],
        v.calibration_method,
        v.per_channel if per_channel is None else per_channel,
        v.op_types,
        list(v.exclude_nodes),
        v.percentile,
    )
    return out


class OnnxInt8Qdq(Int8Converter):
    class Options(CalibratedOptions):
        """Static Q/DQ INT8, symmetric: the form TensorRT's explicit quantization takes, run by ONNX Runtime too."""

        kind: Literal["onnx_int8_qdq"] = "onnx_int8_qdq"

    runtime = "onnxruntime"
    precision = "int8"
    uses_calibration = True

    def convert(self, job: ConversionJob) -> None:
        quantize_job(job, job.out_path)


if __name__ == "__main__":
    raise SystemExit(run_alone(OnnxInt8Qdq()))
