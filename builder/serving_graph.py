"""The Triton models one build publishes and how they are wired.

For a spec named `m`:
  m             the public model: an ensemble over the serving steps
  m_ort         Python backend: the chosen ONNX variant run in-process with ONNX Runtime (CPU, or CUDA)
  m_onnx_fp32   Triton's onnxruntime backend on the FP32 ONNX file (loads in NGC containers, not in the local server)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.repository import config as cfg
from builder.repository.layout import ModelDir, python_model_files
from builder.spec import BuildSpec


@dataclass(frozen=True)
class Names:
    """Model names derived from the spec's name."""

    public: str

    @property
    def ort(self) -> str:
        return f"{self.public}_ort"

    def variant(self, variant_id: str) -> str:
        return f"{self.public}_{variant_id}"


def scheduling(spec: BuildSpec, kind: str, warmup: bool = True) -> cfg.Scheduling:
    s = spec.serving
    return cfg.Scheduling(
        max_batch_size=spec.max_batch_size,
        dynamic_batching=s.dynamic_batching,
        instance_count=s.instance_count,
        instance_kind=kind,
        warmup=s.warmup if warmup else None,
    )


def ort_runner_model(spec: BuildSpec, onnx_file: Path) -> ModelDir:
    names = Names(spec.name)
    params = {"onnx_file": "model.onnx", "intra_op_threads": str(spec.serving.intra_op_threads)}
    config = cfg.python_model(names.ort, spec.inputs, spec.outputs, scheduling(spec, "cpu"), params)
    return ModelDir(names.ort, config, python_model_files("ort_runner", **{"model.onnx": onnx_file}))


def onnxruntime_backend_model(spec: BuildSpec, variant_id: str, onnx_file: Path) -> ModelDir:
    name = Names(spec.name).variant(variant_id)
    config = cfg.onnxruntime_model(name, spec.inputs, spec.outputs, scheduling(spec, "auto"))
    return ModelDir(name, config, {"model.onnx": onnx_file})


def public_ensemble(spec: BuildSpec, first_model: str, report_files: dict[str, Path | bytes]) -> ModelDir:
    io = {t.name: t.name for t in spec.inputs}
    out = {t.name: t.name for t in spec.outputs}
    steps = [cfg.EnsembleStep(first_model, io, out)]
    config = cfg.ensemble_model(spec.name, spec.inputs, spec.outputs, spec.max_batch_size, steps)
    return ModelDir(spec.name, config, {}, extra=report_files)


def plan_models(spec: BuildSpec, fp32_onnx: Path, cpu_onnx: Path, report_files: dict[str, Path | bytes]) -> list[ModelDir]:
    """Every model directory the build writes."""
    runner = ort_runner_model(spec, cpu_onnx)
    return [
        public_ensemble(spec, runner.name, report_files),
        runner,
        onnxruntime_backend_model(spec, "onnx_fp32", fp32_onnx),
    ]
