"""FP32 ONNX -> FP16 ONNX with onnxruntime's float16 converter (FP32 inputs/outputs kept by default).

python -m tritonforge.builder.converters.onnx2fp16 SPEC FP32.onnx OUT.onnx [--options '{"keep_io_types": false}']
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field

from tritonforge.builder.converters.base import ConversionJob, Converter, run_alone
from tritonforge.builder.converters.changed import has_fp16_compute
from tritonforge.errors import ExportError
from tritonforge.spec.base import VariantBase


def to_fp16(src, dst, keep_io_types: bool = True, op_block_list: list[str] | None = None, ir_version: int = 8) -> None:
    """Convert a model file to mixed FP16; ops in `op_block_list` (plus the converter's defaults) stay FP32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from tritonforge.builder.onnx_graph import topological_sort

    model = onnx.load(str(src))
    kwargs: dict[str, object] = {"keep_io_types": keep_io_types}
    if op_block_list:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

        kwargs["op_block_list"] = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(op_block_list))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp16 = convert_float_to_float16(model, **kwargs)
    topological_sort(fp16.graph)
    if fp16.ir_version > ir_version:
        fp16.ir_version = ir_version
    try:
        onnx.checker.check_model(fp16)
    except Exception as e:
        raise ExportError(f"FP16 conversion produced an invalid graph: {e}") from None
    onnx.save(fp16, str(dst))


class OnnxFp16(Converter):
    class Options(VariantBase):
        """Mixed FP16 through onnxruntime's float16 converter."""

        kind: Literal["onnx_fp16"] = "onnx_fp16"
        keep_io_types: bool = Field(True, description="keep FP32 inputs/outputs (casts inside the graph)")
        op_block_list: list[str] = Field(default_factory=list, description="op types kept in FP32")

    runtime = "onnxruntime"
    precision = "fp16"

    def changed_nothing(self, out: Path) -> bool:
        return not has_fp16_compute(out)

    def convert(self, job: ConversionJob) -> None:
        v = job.options(self.Options)
        to_fp16(job.fp32_onnx, job.out_path, v.keep_io_types, v.op_block_list, job.spec.export.ir_version)
        if not v.keep_io_types:
            job.notes.append("FP16 inputs/outputs: the router casts FP32 requests for this variant")


if __name__ == "__main__":
    raise SystemExit(run_alone(OnnxFp16()))
