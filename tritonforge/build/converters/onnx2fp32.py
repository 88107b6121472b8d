"""The FP32 ONNX reference as a variant (a copy of the exported graph)."""

from __future__ import annotations

import shutil

from tritonforge.build.converters.base import ConversionJob, Converter


class OnnxFp32(Converter):
    kind = "onnx_fp32"
    runtime = "onnxruntime"
    precision = "fp32"

    def convert(self, job: ConversionJob) -> None:
        shutil.copyfile(job.fp32_onnx, job.out_path)
