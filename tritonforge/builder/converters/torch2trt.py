"""PyTorch -> TensorRT through torch-tensorrt (FP16), saved as TorchScript for Triton's PyTorch backend.

An optional path for models that TensorRT's ONNX parser handles poorly: torch-tensorrt compiles the module
itself and falls back to PyTorch for unsupported ops. Needs a CUDA device and torch-tensorrt built for the
installed torch; otherwise it reports why and builds nothing.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tritonforge import dtypes
from tritonforge.builder.converters.base import ConversionJob, Converter
from tritonforge.builder.converters.onnx2trt import PlanOptions, observed_dims, profile_shapes
from tritonforge.errors import SourceModelError
from tritonforge.hardware import cuda_device_reason


class TorchTrtFp16(Converter):
    class Options(PlanOptions):
        """torch-tensorrt compiles the module itself (TorchScript for Triton's PyTorch backend)."""

        kind: Literal["torch_trt_fp16"] = "torch_trt_fp16"

    runtime = "pytorch"
    precision = "fp16"
    suffix = ".pt"
    uses_calibration = True
    needs_gpu = True

    def unavailable(self) -> str | None:
        reason = cuda_device_reason()
        if reason:
            return reason
        try:
            import torch_tensorrt  # noqa: F401
        except Exception as e:
            return f"torch-tensorrt is not usable ({type(e).__name__}: {e}); pip install 'tritonforge[gpu]'"
        return None

    def convert(self, job: ConversionJob) -> None:
        import torch
        import torch_tensorrt

        from tritonforge.builder.sources import load_source

        source = load_source(job.spec)
        if not isinstance(source.obj, torch.nn.Module):
            raise SourceModelError("torch_trt_fp16 needs a PyTorch or TorchScript source model")
        assert isinstance(job.variant, PlanOptions)
        shapes = profile_shapes(job.spec, job.variant, observed_dims([job.validation, job.calibration]))
        inputs = [
            torch_tensorrt.Input(
                min_shape=lo,
                opt_shape=opt,
                max_shape=hi,
                dtype=torch.from_numpy(np.empty(0, dtypes.by_name(t.dtype).numpy)).dtype,
            )
            for t, (lo, opt, hi) in ((t, shapes[t.name]) for t in job.spec.inputs)
        ]
        module = source.obj.cuda().eval()
        compiled = torch_tensorrt.compile(module, ir="ts", inputs=inputs, enabled_precisions={torch.half})
        torch.jit.save(compiled, str(job.out_path))
