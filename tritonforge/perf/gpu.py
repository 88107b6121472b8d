"""GPU utilisation and memory during a measurement, sampled through NVML (nvidia-ml-py) when a GPU is present."""

from __future__ import annotations

import threading
import time

from tritonforge.hardware import gpu_info


class GpuSampler:
    """with GpuSampler() as s: ...  -> s.result(): mean/peak utilisation and peak memory, or why there is none."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.absent = gpu_info().absent

    def _run(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            while not self._stop.is_set():
                util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
                self.samples.append((float(util), float(mem)))
                time.sleep(self.every_s)
        finally:
            pynvml.nvmlShutdown()

    def __enter__(self) -> GpuSampler:
        if not self.absent:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def result(self) -> dict:
        if self.absent:
            return {"absent": self.absent}
        if not self.samples:
            return {"absent": "no samples"}
        utils = [u for u, _ in self.samples]
        return {
            "util_mean_pct": sum(utils) / len(utils),
            "util_peak_pct": max(utils),
            "memory_peak_mb": max(m for _, m in self.samples),
        }
