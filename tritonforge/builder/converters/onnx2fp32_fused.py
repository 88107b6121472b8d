"""FP32 ONNX after the graph-optimization stage: a transformer's attention, skip-LayerNorms and bias-GELUs fused
into ONNX Runtime's kernels (see fusion.py). The same arithmetic in fewer, faster kernels: gated against FP32
like any variant, and skipped with the reason where there is no attention to fuse.

    python -m tritonforge.builder.converters.onnx2fp32_fused SPEC FP32.onnx OUT.onnx
"""

from __future__ import annotations

import shutil
from typing import Literal

from tritonforge.builder.converters.base import ConversionJob, Converter, SourceGraph, run_alone
from tritonforge.spec.base import VariantBase


class OnnxFp32Fused(Converter):
    class Options(VariantBase):
        """FP32 with attention and its neighbours fused (transformer encoders)."""

        kind: Literal["onnx_fp32_fused"] = "onnx_fp32_fused"

    runtime = "onnxruntime"
    precision = "fp32"
    exact = True

    def source_graph(self, variant: VariantBase) -> SourceGraph:
        return "fused"

    def convert(self, job: ConversionJob) -> None:
        shutil.copyfile(job.fp32_onnx, job.out_path)


if __name__ == "__main__":
    raise SystemExit(run_alone(OnnxFp32Fused()))
