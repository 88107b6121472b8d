"""The runtimes a variant can be served in, one module per runtime, in one table; and opening a built variant in
its runtime, to run it on the validation data and time it.

Each runtime (tritonforge/builder/runtimes/<name>.py) owns its runner, its Triton backend and platform names and
its Triton model layout. Adding one = a module with a Runtime subclass + one line below; a converter names it in
its `runtime`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tritonforge.builder.runtimes.base import Layout, Opened, Runtime, RuntimeRegistry
from tritonforge.builder.runtimes.onnxruntime import OnnxRuntime
from tritonforge.builder.runtimes.tensorrt import TensorRt
from tritonforge.builder.runtimes.torchscript import TorchScript
from tritonforge.serving.batching import Batch

if TYPE_CHECKING:
    from tritonforge.builder.serving_ort import ServingOrt


RUNTIMES = RuntimeRegistry()
RUNTIMES.register(OnnxRuntime())
RUNTIMES.register(TensorRt())
RUNTIMES.register(TorchScript())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@runtime_checkable
class Timer(Protocol):
    """Times a runtime on a batch kept for it: `window` runs it back to back and returns each run's seconds."""

    def prepare(self, key: str, batch: Batch) -> None: ...

    def window(self, key: str, min_runs: int, window_s: float) -> list[float]: ...


class LocalTimer:
    """A Timer over a callable that runs in this process."""

    def __init__(self, run: Callable[[Batch], object]) -> None:
        self.run = run
        self.batches: dict[str, Batch] = {}

    def prepare(self, key: str, batch: Batch) -> None:
        self.batches[key] = batch

    def window(self, key: str, min_runs: int, window_s: float) -> list[float]:
        batch = self.batches[key]
        samples: list[float] = []
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
    """Load `path` in `runtime` (a name in RUNTIMES). A runtime that runs in the serving environment (ONNX
    Runtime on CPU) opens there when `ort` (that environment's worker) is given, else in this process."""
    rt = RUNTIMES[runtime]
    remote = rt.open_in_serving_environment(ort, path, output_names, threads) if ort is not None else None
    if remote is not None:
        assert ort is not None
        if warm_batch is not None:
            remote.run(warm_batch)
        return OpenedRuntime(remote.run, remote, "CPU", remote.memory_mb, ort.label)
    before = _rss_mb()
    opened = rt.open(path, input_names, output_names, threads)
    if warm_batch is not None:
        opened.run(warm_batch)
    return OpenedRuntime(opened.run, LocalTimer(opened.run), opened.device, max(0.0, _rss_mb() - before), opened.label)


__all__ = [
    "RUNTIMES",
    "Layout",
    "LocalTimer",
    "Opened",
    "OpenedRuntime",
    "Runtime",
    "RuntimeRegistry",
    "Timer",
    "open_runtime",
]
