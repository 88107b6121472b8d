"""TorchScript on CUDA (torch-tensorrt compiled modules), served by Triton's pytorch backend (platform
pytorch_libtorch). torch is imported only when a module is opened."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tritonforge.builder.runtimes.base import Batch, Layout, Opened, Run, Runtime

if TYPE_CHECKING:
    from tritonforge.repository import config as cfg
    from tritonforge.spec import TensorSpec

MODEL_FILE = "model.pt"


def torchscript_cuda(path: Path, input_names: list[str], output_names: list[str]) -> Run:
    """Run a TorchScript file on CUDA with numpy in (inputs in `input_names` order) and float32 numpy out."""
    import torch

    module = torch.jit.load(str(path), map_location="cuda").eval()

    def run(batch: Batch) -> Batch:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(batch[n])).cuda() for n in input_names])
        if isinstance(out, torch.Tensor):
            out = (out,)
        return {n: v.float().cpu().numpy() for n, v in zip(output_names, out, strict=True)}

    return run


class TorchScript(Runtime):
    name = "pytorch"
    backend = "pytorch"
    platform = "pytorch_libtorch"
    instance_kind = "gpu"

    def open(self, path: Path, input_names: list[str], output_names: list[str], threads: int = 0) -> Opened:
        return Opened(torchscript_cuda(path, input_names, output_names), "CUDA (torch-tensorrt)", self.name)

    def layout(
        self,
        name: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        scheduling: cfg.Scheduling,
        path: Path,
    ) -> Layout:
        from tritonforge.repository import config as cfg

        return Layout(cfg.pytorch_model(name, inputs, outputs, scheduling), {MODEL_FILE: path})
