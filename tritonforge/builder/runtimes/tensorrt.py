"""TensorRT: serialized plans, served by Triton's tensorrt backend (platform tensorrt_plan). A plan runs only on the
GPU and TensorRT version it was built with, so each is published under its compute capability. tensorrt and
torch are imported only when a plan is opened (they are optional: `pip install 'tritonforge[gpu]'`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonforge.builder.runtimes.base import Batch, Layout, Opened, Runtime
from tritonforge.errors import ExportError

if TYPE_CHECKING:
    from tritonforge.repository import config as cfg
    from tritonforge.spec import TensorSpec


class TrtRunner:
    """Runs a plan on GPU 0 with numpy in and out (device buffers through torch.cuda)."""

    def __init__(self, plan_path: Path) -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine: Any = trt.Runtime(self.logger).deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self.engine is None:
            raise ExportError(f"{plan_path}: TensorRT cannot deserialize this plan (other GPU or TensorRT version?)")
        self.context: Any = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs: list[str] = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs: list[str] = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes: dict[str, np.dtype] = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = torch.cuda.Stream()

    def run(self, batch: Batch) -> Batch:
        torch = self._torch
        keep = []
        for name in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(batch[name], dtype=self.dtypes[name])).cuda()
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, self.dtypes[name])).dtype
            outs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, outs[name].data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        self.stream.synchronize()
        return {n: v.cpu().numpy() for n, v in outs.items()}


def plan_filename(compute_capability: str) -> str:
    """The plan's name in the version directory for one compute capability ('8.9' -> 'model_sm89.plan')."""
    return f"model_sm{compute_capability.replace('.', '')}.plan"


class TensorRt(Runtime):
    name = "tensorrt"
    backend = "tensorrt"
    platform = "tensorrt_plan"
    instance_kind = "gpu"

    def open(self, path: Path, input_names: list[str], output_names: list[str], threads: int = 0) -> Opened:
        return Opened(TrtRunner(path).run, "CUDA (TensorRT)", self.name)

    def layout(
        self,
        name: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        scheduling: cfg.Scheduling,
        path: Path,
    ) -> Layout:
        """One plan per compute capability: on another GPU Triton finds no plan and the model stays UNAVAILABLE."""
        from tritonforge.hardware import gpu_info
        from tritonforge.repository import config as cfg

        cc = gpu_info().compute_capability or "0.0"
        filename = plan_filename(cc)
        return Layout(cfg.tensorrt_model(name, inputs, outputs, scheduling, {cc: filename}), {filename: path})
