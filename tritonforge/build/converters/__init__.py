"""Conversions from the FP32 ONNX reference to precision variants, one module per target, in one table.

Adding a format: write `onnx2<target>.py` with a Converter subclass and add one line to CONVERTERS.
"""

from __future__ import annotations

from tritonforge.build.converters.base import ConversionJob, Converter
from tritonforge.build.converters.onnx2fp16 import OnnxFp16
from tritonforge.build.converters.onnx2fp32 import OnnxFp32
from tritonforge.build.converters.onnx2int8_dynamic import OnnxInt8Dynamic
from tritonforge.build.converters.onnx2int8_qdq import OnnxInt8Qdq
from tritonforge.build.converters.onnx2trt import TrtFp16, TrtInt8
from tritonforge.build.converters.torch2trt import TorchTrtFp16

# kind -> converter. Runtime and precision live on each class (Converter.runtime / .precision).
CONVERTERS: dict[str, Converter] = {
    "onnx_fp32": OnnxFp32(),
    "onnx_fp16": OnnxFp16(),
    "onnx_int8_dynamic": OnnxInt8Dynamic(),
    "onnx_int8_qdq": OnnxInt8Qdq(),
    "trt_fp16": TrtFp16(),
    "trt_int8": TrtInt8(),
    "torch_trt_fp16": TorchTrtFp16(),
}

__all__ = ["CONVERTERS", "ConversionJob", "Converter"]
