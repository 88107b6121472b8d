"""ONNX -> TensorRT plan (FP16 or INT8) through the TensorRT Python API.

Precision comes from the ONNX graph, not builder flags: TensorRT 10.12 deprecated BuilderFlag.FP16/INT8 and
10.1 the INT8 calibrators; TensorRT 11 removed both and is always strongly typed. So FP16 plans are built from
the mixed-precision ONNX (onnxruntime's float16 converter) and INT8 plans from a Q/DQ ONNX (symmetric,
calibrated by ONNX Runtime), with a strongly typed network on TensorRT 10.x (the Triton 24.10 container has
10.5) and the default network on 11.x. One optimization profile covers batch 1..max_batch_size; a persistent
timing cache per (TensorRT version, GPU) makes rebuilds fast. Plans only run on the GPU and TensorRT version
they were built with: the manifest records both and a mismatch triggers a rebuild.

Without a CUDA device this reports "skipped: no CUDA device" and builds nothing.

    python -m tritonforge.builder.converters.onnx2trt {fp16|int8} SPEC FP32.onnx OUT.plan [--options JSON]
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from tritonforge.builder.converters.base import ConversionJob, Converter, run_alone
from tritonforge.builder.converters.onnx2fp16 import to_fp16
from tritonforge.builder.converters.onnx2int8_qdq import CalibratedOptions, quantize_job
from tritonforge.errors import ExportError
from tritonforge.hardware import cuda_device_reason, gpu_info, workspace_bytes
from tritonforge.spec.base import VariantBase

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset
    from tritonforge.spec import BuildSpec


class PlanOptions(VariantBase):
    """What every TensorRT plan takes."""

    workspace_mb: int | None = Field(None, ge=16, description="workspace (default: half the free GPU memory, at most 4096)")
    opt_batch_size: int | None = Field(None, ge=1, description="batch size the optimization profile tunes for")


def tensorrt_unavailable() -> str | None:
    """Why TensorRT plans cannot be built here ('no CUDA device', 'tensorrt is not installed'), or None."""
    reason = cuda_device_reason()
    if reason:
        return reason
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return f"tensorrt is not installed ({e}); pip install 'tritonforge[gpu]'"
    return None


def network_flags(trt) -> int:
    """Strongly typed where the enum still has the flag (TensorRT 10.x); 11.x networks are strongly typed always."""
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if strongly_typed is None else 1 << int(strongly_typed)


class TimingCacheManager:
    """A persistent TensorRT timing cache per (TensorRT version, GPU name, compute capability)."""

    def __init__(self, root: Path | None = None) -> None:
        base = Path(os.environ.get("TRITONFORGE_CACHE", Path.home() / ".cache" / "tritonforge"))
        self.root = root or base / "trt_timing"

    def path(self, trt_version: str) -> Path:
        gpu = gpu_info()
        tag = f"trt{trt_version}_{gpu.name}_sm{gpu.compute_capability}".replace(" ", "-").replace("/", "-")
        return self.root / f"{tag}.cache"

    def load(self, config, trt_version: str):
        path = self.path(trt_version)
        data = path.read_bytes() if path.is_file() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)
        return cache

    def save(self, cache, trt_version: str) -> None:
        path = self.path(trt_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(bytes(cache.serialize()))
            os.replace(tmp, path)


def observed_dims(datasets: list[Dataset | None]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per input: the smallest and largest per-item shape seen in the data."""
    lo: dict[str, np.ndarray] = {}
    hi: dict[str, np.ndarray] = {}
    for ds in datasets:
        for batch in ds or []:
            for name, arr in batch.items():
                shape = np.array(arr.shape[1:])
                lo[name] = np.minimum(lo.get(name, shape), shape)
                hi[name] = np.maximum(hi.get(name, shape), shape)
    return {n: (lo[n], hi[n]) for n in lo}


def profile_shapes(spec: BuildSpec, variant: PlanOptions, dims: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """min/opt/max full shapes per input: batch 1 / opt / max_batch_size. Dynamic dims: 1 / largest seen /
    what serving can send. With a tokenizer in front that is its max_length (its length buckets can send any
    length up to it), never just the longest text in the data; otherwise the largest seen."""
    opt_batch = variant.opt_batch_size or max(1, spec.max_batch_size // 2)
    serving_max = spec.preprocess.max_length if spec.preprocess is not None else 0
    out = {}
    for t in spec.inputs:
        seen_hi = dims.get(t.name, (None, np.array([d if d > 0 else 1 for d in t.shape])))[1]
        item_min = [d if d > 0 else 1 for d in t.shape]
        item_opt = [d if d > 0 else int(seen_hi[i]) for i, d in enumerate(t.shape)]
        item_max = [d if d > 0 else max(int(seen_hi[i]), serving_max) for i, d in enumerate(t.shape)]
        out[t.name] = ((1, *item_min), (opt_batch, *item_opt), (spec.max_batch_size, *item_max))
    return out


def build_plan(onnx_path: Path, plan_path: Path, shapes: dict, workspace: int) -> dict:
    """Parse ONNX, build a serialized engine with one optimization profile, write it. Returns build facts."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    caches = TimingCacheManager()
    cache = caches.load(config, trt.__version__)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name} (see the TensorRT log above)")
    plan_path.write_bytes(bytes(engine))
    caches.save(cache, trt.__version__)
    gpu = gpu_info()
    return {
        "tensorrt": trt.__version__,
        "gpu": gpu.name,
        "compute_capability": gpu.compute_capability,
        "workspace_bytes": workspace,
        "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
        "strongly_typed": bool(network_flags(trt)),
    }


class _TrtConverter(Converter):
    runtime = "tensorrt"
    suffix = ".plan"
    uses_calibration = True  # the optimization profile covers the lengths of the calibration data too
    needs_gpu = True

    def key_parts(self, spec: BuildSpec, calibration: Dataset | None) -> dict[str, str]:
        parts = super().key_parts(spec, calibration)
        if spec.preprocess is not None:
            parts["serving_max_length"] = str(spec.preprocess.max_length)  # bounds the plan's profile
        return parts

    def unavailable(self) -> str | None:
        return tensorrt_unavailable()

    def _graph(self, job: ConversionJob) -> Path:
        raise NotImplementedError

    def convert(self, job: ConversionJob) -> None:
        variant = job.variant
        assert isinstance(variant, PlanOptions)
        graph = self._graph(job)
        dims = observed_dims([job.validation, job.calibration])
        facts = build_plan(graph, job.out_path, profile_shapes(job.spec, variant, dims), workspace_bytes(variant.workspace_mb))
        job.notes.append(f"TensorRT {facts['tensorrt']} on {facts['gpu']} (sm {facts['compute_capability']})")


class TrtFp16(_TrtConverter):
    """FP16 plan from the mixed-precision ONNX graph."""

    class Options(PlanOptions):
        kind: Literal["trt_fp16"] = "trt_fp16"
        op_block_list: list[str] = Field(default_factory=list, description="op types kept in FP32")

    precision = "fp16"

    def _graph(self, job: ConversionJob) -> Path:
        variant = job.variant
        assert isinstance(variant, TrtFp16.Options)
        out = job.work_dir / f"{variant.variant_id}_fp16_graph.onnx"
        to_fp16(
            job.fp32_onnx, out, keep_io_types=True, op_block_list=variant.op_block_list, ir_version=job.spec.export.ir_version
        )
        return out


class TrtInt8(_TrtConverter):
    """INT8 plan from a symmetric Q/DQ graph calibrated by ONNX Runtime (explicit quantization)."""

    class Options(PlanOptions, CalibratedOptions):
        kind: Literal["trt_int8"] = "trt_int8"

    precision = "int8"

    def _graph(self, job: ConversionJob) -> Path:
        return quantize_job(job, job.work_dir / f"{job.variant.variant_id}_qdq_graph.onnx", per_channel=True)


if __name__ == "__main__":
    precision = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("fp16", "int8") else "fp16"
    raise SystemExit(run_alone(TrtInt8() if precision == "int8" else TrtFp16()))
