"""Open a built variant in its own runtime, to run it on the validation data and time it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Batch = dict[str, np.ndarray]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def ort_providers() -> list[str]:
    """CUDA when onnxruntime-gpu and a GPU are present (as Triton's onnxruntime backend would use), else CPU."""
    import onnxruntime as ort

    from tritonforge.hardware import cuda_device_reason

    if "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_reason() is None:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@dataclass
class OpenedRuntime:
    """A runnable variant and the resident memory its loading and first run added."""

    run: Callable[[Batch], Batch]
    device: str
    memory_mb: float


def open_runtime(runtime: str, path: Path, input_names: list[str], output_names: list[str],
                 warm_batch: Batch | None = None, threads: int = 0) -> OpenedRuntime:
    """Load `path` in `runtime` ('onnxruntime', 'tensorrt' or 'pytorch')."""
    before = _rss_mb()
    if runtime == "onnxruntime":
        from tritonforge.build.ort_runtime import OrtModel

        providers = ort_providers()
        model = OrtModel(path, output_names, threads=threads, providers=providers)
        run, device = model.run, providers[0].replace("ExecutionProvider", "")
    elif runtime == "tensorrt":
        from tritonforge.build.converters.onnx2trt import TrtRunner

        run, device = TrtRunner(path).run, "CUDA (TensorRT)"
    elif runtime == "pytorch":
        run, device = _torchscript_cuda(path, input_names, output_names), "CUDA (torch-tensorrt)"
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    if warm_batch is not None:
        run(warm_batch)
    return OpenedRuntime(run, device, max(0.0, _rss_mb() - before))


def _torchscript_cuda(path: Path, input_names: list[str], output_names: list[str]) -> Callable[[Batch], Batch]:
    import torch

    module = torch.jit.load(str(path), map_location="cuda").eval()

    def run(batch: Batch) -> Batch:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(batch[n])).cuda() for n in input_names])
        if isinstance(out, torch.Tensor):
            out = (out,)
        return {n: v.float().cpu().numpy() for n, v in zip(output_names, out)}

    return run
