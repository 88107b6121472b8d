"""The FP32 ONNX reference as a variant (a copy of the exported graph)."""

from __future__ import annotations

import shutil
from typing import Literal

from tritonforge.builder.converters.base import ConversionJob, Converter
from tritonforge.spec.base import VariantBase


class OnnxFp32(Converter):
    class Options(VariantBase):
        """The FP32 reference (always built)."""

        kind: Literal["onnx_fp32"] = "onnx_fp32"

    runtime = "onnxruntime"
    precision = "fp32"

    def convert(self, job: ConversionJob) -> None:
        shutil.copyfile(job.fp32_onnx, job.out_path)
