"""The Triton models one build publishes and how they are wired.

For a spec named `m`:
  m             the public model: an ensemble over the serving steps
  m_ort         Python backend: the fastest passing ONNX variant run in-process by ONNX Runtime (CPU or CUDA)
  m_<variant>   one model per published variant: Triton's onnxruntime backend for ONNX files, tensorrt_plan
                for TensorRT plans, pytorch_libtorch for torch-tensorrt modules (none of those backends is in
                the local CPU server; all are in NGC containers)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.repository import config as cfg
from builder.repository.layout import ModelDir, python_model_files
from builder.spec import BuildSpec, TensorSpec
from builder.variants import VariantOutcome


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


def variant_io(spec: BuildSpec, outcome: VariantOutcome) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The variant's tensor signature: FP16 variants built without keep_io_types take and give float16."""
    if outcome.precision == "fp16" and outcome.options.get("keep_io_types") is False:
        def half(t: TensorSpec) -> TensorSpec:
            return t.model_copy(update={"dtype": "float16"}) if t.dtype == "float32" else t
        return [half(t) for t in spec.inputs], [half(t) for t in spec.outputs]
    return list(spec.inputs), list(spec.outputs)


def ort_runner_model(spec: BuildSpec, onnx_file: Path) -> ModelDir:
    names = Names(spec.name)
    params = {"onnx_file": "model.onnx", "intra_op_threads": str(spec.serving.intra_op_threads)}
    config = cfg.python_model(names.ort, spec.inputs, spec.outputs, scheduling(spec, "cpu"), params)
    return ModelDir(names.ort, config, python_model_files("ort_runner", **{"model.onnx": onnx_file}))


def variant_model(spec: BuildSpec, outcome: VariantOutcome) -> ModelDir:
    """The Triton model serving one published variant in its native backend."""
    name = outcome.published_as
    inputs, outputs = variant_io(spec, outcome)
    path = Path(outcome.file)
    if outcome.runtime == "onnxruntime":
        config = cfg.onnxruntime_model(name, inputs, outputs, scheduling(spec, "auto"))
        return ModelDir(name, config, {"model.onnx": path})
    if outcome.runtime == "tensorrt":
        # One plan per compute capability: on another GPU Triton finds no plan and the model stays UNAVAILABLE.
        from builder.hardware import gpu_info

        cc = gpu_info().compute_capability or "0.0"
        filename = f"model_sm{cc.replace('.', '')}.plan"
        config = cfg.tensorrt_model(name, inputs, outputs, scheduling(spec, "gpu"), {cc: filename})
        return ModelDir(name, config, {filename: path})
    if outcome.runtime == "pytorch":
        config = cfg.pytorch_model(name, inputs, outputs, scheduling(spec, "gpu"))
        return ModelDir(name, config, {"model.pt": path})
    raise ValueError(f"no Triton model layout for runtime {outcome.runtime!r}")


def public_ensemble(spec: BuildSpec, first_model: str, report_files: dict[str, Path | bytes]) -> ModelDir:
    io = {t.name: t.name for t in spec.inputs}
    out = {t.name: t.name for t in spec.outputs}
    steps = [cfg.EnsembleStep(first_model, io, out)]
    config = cfg.ensemble_model(spec.name, spec.inputs, spec.outputs, spec.max_batch_size, steps)
    return ModelDir(spec.name, config, {}, extra=report_files)


def plan_models(spec: BuildSpec, published: list[VariantOutcome], cpu_variant: VariantOutcome,
                report_files: dict[str, Path | bytes]) -> list[ModelDir]:
    """Every model directory the build writes."""
    runner = ort_runner_model(spec, Path(cpu_variant.file))
    return [public_ensemble(spec, runner.name, report_files), runner] + [variant_model(spec, o) for o in published]
