"""Open a built variant in its own runtime, to run it on the validation data and time it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tritonforge.serving.batching import Batch

if TYPE_CHECKING:
    from tritonforge.builder.serving_ort import ServingOrt


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


class Timer(Protocol):
    """Times a runtime on a batch kept for it: `window` runs it back to back and returns each run's seconds."""

    def prepare(self, key: str, batch: Batch) -> None: ...

    def window(self, key: str, min_runs: int, window_s: float) -> list[float]: ...


class LocalTimer:
    """A Timer over a callable that runs in this process."""

    def __init__(self, run: Callable[[Batch], Batch]) -> None:
        self.run = run
        self.batches: dict[str, Batch] = {}

    def prepare(self, key: str, batch: Batch) -> None:
        self.batches[key] = batch

    def window(self, key: str, min_runs: int, window_s: float) -> list[float]:
        batch, samples = self.batches[key], []
        start = time.perf_counter()
        while len(samples) < min_runs or time.perf_counter() - start < window_s:
            t0 = time.perf_counter()
            self.run(batch)
            samples.append(time.perf_counter() - t0)
        return samples


@dataclass
class OpenedRuntime:
    """A runnable variant, how to time it, where it ran, and the resident memory its loading and first run
    added."""

    run: Callable[[Batch], Batch]
    timer: Timer
    device: str
    memory_mb: float
    runtime_label: str


def open_runtime(
    runtime: str,
    path: Path,
    input_names: list[str],
    output_names: list[str],
    warm_batch: Batch | None = None,
    threads: int = 0,
    ort: ServingOrt | None = None,
) -> OpenedRuntime:
    """Load `path` in `runtime` ('onnxruntime', 'tensorrt' or 'pytorch'). ONNX files open in `ort` (the serving
    environment's ONNX Runtime) when given, else in this process's."""
    if runtime == "onnxruntime" and ort is not None and ort_providers() == ["CPUExecutionProvider"]:
        remote = ort.open(path, output_names, threads)
        if warm_batch is not None:
            remote.run(warm_batch)
        return OpenedRuntime(remote.run, remote, "CPU", remote.memory_mb, ort.label)
    before = _rss_mb()
    label = runtime
    if runtime == "onnxruntime":
        from tritonforge.builder.ort_runtime import OrtModel

        providers = ort_providers()
        model = OrtModel(path, output_names, threads=threads, providers=providers)
        run, device = model.run, providers[0].replace("ExecutionProvider", "")
        label = f"onnxruntime {ort_version()} (build environment)"
    elif runtime == "tensorrt":
        from tritonforge.builder.converters.onnx2trt import TrtRunner

        run, device = TrtRunner(path).run, "CUDA (TensorRT)"
    elif runtime == "pytorch":
        run, device = _torchscript_cuda(path, input_names, output_names), "CUDA (torch-tensorrt)"
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    if warm_batch is not None:
        run(warm_batch)
    return OpenedRuntime(run, LocalTimer(run), device, max(0.0, _rss_mb() - before), label)


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _torchscript_cuda(path: Path, input_names: list[str], output_names: list[str]) -> Callable[[Batch], Batch]:
    import torch

    module = torch.jit.load(str(path), map_location="cuda").eval()

    def run(batch: Batch) -> Batch:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(batch[n])).cuda() for n in input_names])
        if isinstance(out, torch.Tensor):
            out = (out,)
        return {n: v.float().cpu().numpy() for n, v in zip(output_names, out, strict=True)}

    return run
