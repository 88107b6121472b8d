"""FP32 ONNX -> INT8 with dynamic quantization (weights INT8 offline, activations quantized at run time).
No calibration data needed; fastest path on CPU.

    python -m tritonforge.builder.converters.onnx2int8_dynamic SPEC FP32.onnx OUT.onnx [--options '{"per_channel": true}']
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tritonforge.builder.converters.base import ConversionJob, Converter, run_alone
from tritonforge.builder.converters.changed import has_int8
from tritonforge.builder.converters.int8_common import DEFAULT_OP_TYPES, preprocessed, quantized_nodes, quiet
from tritonforge.errors import ExportError
from tritonforge.spec.base import VariantBase


class Int8Options(VariantBase):
    """What every INT8 converter takes: which ops are quantized, which nodes stay in float."""

    per_channel: bool = False
    op_types: list[str] | None = Field(None, description="op types to quantize (default: MatMul, Gemm, Conv)")
    exclude_nodes: list[str] = Field(default_factory=list, description="node names kept in float")


class Int8Converter(Converter):
    """What every ONNX INT8 conversion shares: its output must hold quantized nodes."""

    def changed_nothing(self, out: Path) -> bool:
        return not has_int8(out)


class OnnxInt8Dynamic(Int8Converter):
    class Options(Int8Options):
        """Weights INT8 offline, activations quantized at run time (no calibration data)."""

        kind: Literal["onnx_int8_dynamic"] = "onnx_int8_dynamic"

    runtime = "onnxruntime"
    precision = "int8"
    batch_dependent = True  # activation scales are computed over the whole batch

    def convert(self, job: ConversionJob) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        v = job.options(Int8Options)
        src = preprocessed(job.fp32_onnx, job.work_dir, job.notes)
        with quiet():
            quantize_dynamic(
                str(src),
                str(job.out_path),
                per_channel=v.per_channel,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=v.op_types or DEFAULT_OP_TYPES,
                nodes_to_exclude=excluded_names(v.exclude_nodes) or None,
            )
        quantized = quantized_nodes(job.out_path)
        kept_quantized = [name for name in v.exclude_nodes if name in quantized]
        if kept_quantized:
            raise ExportError(f"exclude_nodes: {', '.join(kept_quantized)} came out quantized")


def excluded_names(nodes: list[str]) -> list[str]:
    """The names dynamic quantization must be told to skip: it turns a Gemm into a MatMul named `<gemm>_MatMul`
    before it decides what to quantize, so a Gemm is excluded under both names."""
    return [n for name in nodes for n in (name, f"{name}_MatMul")]


if __name__ == "__main__":
    raise SystemExit(run_alone(OnnxInt8Dynamic()))
