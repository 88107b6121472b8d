"""What the build machine has: GPU name, memory, driver and compute capability through NVML (nvidia-ml-py),
and the CPU. Everything degrades to a clear 'absent because ...' rather than failing."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class GpuInfo:
    """GPU 0 as NVML reports it, or why there is none (`absent` set, the rest empty)."""

    name: str = ""
    compute_capability: str = ""
    memory_total_mb: int = 0
    memory_free_mb: int = 0
    driver: str = ""
    count: int = 0
    absent: str = ""

    @property
    def present(self) -> bool:
        return not self.absent

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """What a TensorRT plan depends on: the GPU model and compute capability, or that there is none.
        Free memory changes from one moment to the next and must never make a build look different."""
        return {"name": self.name, "compute_capability": self.compute_capability, "present": self.present}


@functools.lru_cache(maxsize=1)
def gpu_info() -> GpuInfo:
    """Read GPU 0 through NVML. Absent GPUs, drivers or packages are reported, never raised."""
    try:
        import pynvml
    except ImportError:
        return GpuInfo(absent="NVML absent: nvidia-ml-py is not installed (pip install 'tritonforge[gpu]')")
    try:
        pynvml.nvmlInit()
    except Exception as e:  # pynvml.NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return GpuInfo(absent=f"NVML absent: {e} (no NVIDIA driver on this machine)")
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return GpuInfo(absent="no CUDA device")
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        driver = pynvml.nvmlSystemGetDriverVersion()
        return GpuInfo(
            name=name.decode() if isinstance(name, bytes) else str(name),
            compute_capability=f"{major}.{minor}",
            memory_total_mb=int(mem.total // 2**20),
            memory_free_mb=int(mem.free // 2**20),
            driver=driver.decode() if isinstance(driver, bytes) else str(driver),
            count=count,
        )
    except Exception as e:
        return GpuInfo(absent=f"NVML error: {e}")
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def cuda_device_reason() -> str | None:
    """None when a CUDA device can be used; otherwise the reason, starting 'no CUDA device'."""
    info = gpu_info()
    if info.present:
        return None
    try:
        import torch

        if torch.cuda.is_available():
            return None
    except Exception:
        pass
    return f"no CUDA device ({info.absent})" if info.absent != "no CUDA device" else "no CUDA device"


def cpu_info() -> dict:
    """CPU model and core count (timings are only comparable on the same machine)."""
    model = platform.machine()  # platform.processor() would run `uname -p`
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.readlines()
        for line in lines:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count() or 0}


def workspace_bytes(requested_mb: int | None) -> int:
    """TensorRT workspace: the spec's value, else half the free GPU memory, at most 4 GiB (1 GiB if unknown)."""
    if requested_mb is not None:
        return requested_mb * 2**20
    info = gpu_info()
    if info.present and info.memory_free_mb:
        return int(min(info.memory_free_mb // 2, 4096)) * 2**20
    return 2**30
