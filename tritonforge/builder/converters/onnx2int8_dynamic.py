"""FP32 ONNX -> INT8 with dynamic quantization (weights INT8 offline, activations quantized at run time).
No calibration data needed; fastest path on CPU.

    python -m tritonforge.builder.converters.onnx2int8_dynamic SPEC FP32.onnx OUT.onnx [--options '{"per_channel": true}']
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tritonforge.builder.converters.base import ConversionJob, Converter, SourceGraph, run_alone
from tritonforge.builder.converters.changed import has_int8
from tritonforge.builder.converters.fusion import float_attention
from tritonforge.builder.converters.int8_common import DEFAULT_OP_TYPES, preprocessed, quantized_nodes, quiet
from tritonforge.errors import ExportError
from tritonforge.spec.base import VariantBase


class Int8Options(VariantBase):
    """What every INT8 converter takes: which ops are quantized, which nodes stay in float."""

    per_channel: bool = False
    op_types: list[str] | None = Field(None, description="op types to quantize (default: MatMul, Gemm, Conv, Attention)")
    exclude_nodes: list[str] = Field(default_factory=list, description="node names kept in float")
    graph: SourceGraph = Field(
        "exported", description="the FP32 graph quantized: as exported, or fused (attention fused, transformers)"
    )


class Int8Converter(Converter):
    """What every ONNX INT8 conversion shares: its output must hold quantized nodes."""

    def changed_nothing(self, out: Path) -> bool:
        return not has_int8(out)

    def source_graph(self, variant: VariantBase) -> SourceGraph:
        assert isinstance(variant, Int8Options)
        return variant.graph


class OnnxInt8Dynamic(Int8Converter):
    class Options(Int8Options):
        """Weights INT8 offline, activations quantized at run time (no calibration data)."""

        kind: Literal["onnx_int8_dynamic"] = "onnx_int8_dynamic"
        weights: Literal["int8", "uint8"] = Field(
            "int8",
            description="int8: the U8S8 kernels (fastest with VNNI/AMX; on CPUs without VNNI they can saturate); "
            "uint8: the U8U8 kernels (no saturation, slower where VNNI speeds up U8S8)",
        )

    runtime = "onnxruntime"
    precision = "int8"
    batch_dependent = True  # activation scales are computed over the whole batch

    def convert(self, job: ConversionJob) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        v = job.options(OnnxInt8Dynamic.Options)
        src = preprocessed(job.fp32_onnx, job.work_dir, job.notes)
        import onnx

        in_float = float_attention(onnx.load(str(src), load_external_data=False))
        with quiet():
            quantize_dynamic(
                str(src),
                str(job.out_path),
                per_channel=v.per_channel,
                weight_type=QuantType.QUInt8 if v.weights == "uint8" else QuantType.QInt8,
                op_types_to_quantize=dynamic_op_types(v, job.notes),
                nodes_to_exclude=excluded_names(v.exclude_nodes) + in_float or None,
            )
        quantized = quantized_nodes(job.out_path)
        kept_quantized = [name for name in v.exclude_nodes if name in quantized]
        if kept_quantized:
            raise ExportError(f"exclude_nodes: {', '.join(kept_quantized)} came out quantized")


def dynamic_op_types(v: OnnxInt8Dynamic.Options, notes: list[str]) -> list[str]:
    """The op types to quantize. The serving runtime's CPU ConvInteger (ONNX Runtime 1.19, as in Triton 24.10; what
    a dynamically quantized Conv becomes) takes uint8 weights only: with int8 weights a Conv stays in float, said
    in a note (the INT8 search's points and a spec's op_types alike)."""
    wanted = v.op_types or DEFAULT_OP_TYPES
    if v.weights == "uint8" or "Conv" not in wanted:
        return wanted
    notes.append("Conv left in float: ONNX Runtime's ConvInteger runs uint8 weights only (weights: uint8 quantizes it)")
    return [op for op in wanted if op != "Conv"]


def excluded_names(nodes: list[str]) -> list[str]:
    """The names dynamic quantization must be told to skip: it turns a Gemm into a MatMul named `<gemm>_MatMul`
    before it decides what to quantize, so a Gemm is excluded under both names."""
    return [n for name in nodes for n in (name, f"{name}_MatMul")]


if __name__ == "__main__":
    raise SystemExit(run_alone(OnnxInt8Dynamic()))
