"""FP32 ONNX -> INT8 with dynamic quantization (weights INT8 offline, activations quantized at run time).
No calibration data needed; fastest path on CPU.

    python -m tritonforge.build.converters.onnx2int8_dynamic SPEC FP32.onnx OUT.onnx [--options '{"per_channel": true}']
"""

from __future__ import annotations

from onnxruntime.quantization import QuantType, quantize_dynamic

from tritonforge.build.converters.base import ConversionJob, Converter, run_alone
from tritonforge.build.converters.int8_common import DEFAULT_OP_TYPES, preprocessed, quiet


class OnnxInt8Dynamic(Converter):
    kind = "onnx_int8_dynamic"
    runtime = "onnxruntime"
    precision = "int8"
    batch_dependent = True  # activation scales are computed over the whole batch

    def convert(self, job: ConversionJob) -> None:
        v = job.variant
        src = preprocessed(job.fp32_onnx, job.work_dir, job.notes)
        with quiet():
            quantize_dynamic(str(src), str(job.out_path), per_channel=v.per_channel, weight_type=QuantType.QInt8,
                             op_types_to_quantize=v.op_types or DEFAULT_OP_TYPES,
                             nodes_to_exclude=list(v.exclude_nodes) or None)


if __name__ == "__main__":
    raise SystemExit(run_alone(OnnxInt8Dynamic()))
