"""Conversions from the FP32 ONNX reference to precision variants, one module per target, in one table.

Adding a format: write `onnx2<target>.py` with a Converter subclass (its Options, runtime and needs) and add one
line to _ALL. The build spec's `variants` entries are the union of every converter's Options, told apart by
`kind`, so a field the kind does not take is an error naming it.
"""

from __future__ import annotations

from pydantic import TypeAdapter

from tritonforge.builder.converters.base import ConversionJob, Converter
from tritonforge.builder.converters.onnx2fp16 import OnnxFp16
from tritonforge.builder.converters.onnx2fp32 import OnnxFp32
from tritonforge.builder.converters.onnx2fp32_ftz import OnnxFp32Ftz
from tritonforge.builder.converters.onnx2fp32_fused import OnnxFp32Fused
from tritonforge.builder.converters.onnx2int8_dynamic import OnnxInt8Dynamic
from tritonforge.builder.converters.onnx2int8_qdq import OnnxInt8Qdq
from tritonforge.builder.converters.onnx2trt import TrtFp16, TrtInt8
from tritonforge.builder.converters.torch2trt import TorchTrtFp16
from tritonforge.spec.base import VariantBase
from tritonforge.spec.model import VariantSpec
from tritonforge.spec.registry import VARIANT_KINDS

_ALL = [
    OnnxFp32(),
    OnnxFp32Ftz(),
    OnnxFp32Fused(),
    OnnxFp16(),
    OnnxInt8Dynamic(),
    OnnxInt8Qdq(),
    TrtFp16(),
    TrtInt8(),
    TorchTrtFp16(),
]
CONVERTERS: dict[str, Converter] = {c.kind: c for c in _ALL}  # kind -> converter

for _converter in _ALL:
    VARIANT_KINDS.register(_converter.Options)
_ADAPTER: TypeAdapter[VariantBase] = TypeAdapter(VariantSpec)


def variant_spec(kind: str, **options: object) -> VariantBase:
    """A variant entry of `kind` with `options` (validated as the spec validates it)."""
    return _ADAPTER.validate_python({"kind": kind, **options})


__all__ = ["CONVERTERS", "ConversionJob", "Converter", "VariantSpec", "variant_spec"]
