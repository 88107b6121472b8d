"""Triton config.pbtxt built from tritonclient's model_config_pb2 and written/read with protobuf text_format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge import dtypes
from tritonforge.errors import RepositoryError
from tritonforge.spec import DynamicBatchingSpec, TensorSpec, WarmupSpec

ModelConfig = mc.ModelConfig


def _data_type(dtype_name: str) -> int:
    return mc.DataType.Value(dtypes.by_name(dtype_name).triton)


def wire_dims(shape: Sequence[int]) -> list[int]:
    """A tensor's dims as clients send and receive them (without the batch dim): Triton needs at least one dim,
    so a per-sample scalar (shape []) travels as [1] and is reshaped to [] for the model."""
    return list(shape) if shape else [1]


def model_input(t: TensorSpec) -> mc.ModelInput:
    tensor = mc.ModelInput(name=t.name, data_type=_data_type(t.dtype), dims=wire_dims(t.shape))
    if not t.shape:
        tensor.reshape.SetInParent()  # reshape { shape: [] }: the model sees [batch]
    return tensor


def model_output(t: TensorSpec) -> mc.ModelOutput:
    tensor = mc.ModelOutput(name=t.name, data_type=_data_type(t.dtype), dims=wire_dims(t.shape))
    if not t.shape:
        tensor.reshape.SetInParent()
    return tensor


def dynamic_batching(spec: DynamicBatchingSpec) -> mc.ModelDynamicBatching | None:
    if not spec.enabled:
        return None
    return mc.ModelDynamicBatching(
        preferred_batch_size=list(spec.preferred_batch_sizes),
        max_queue_delay_microseconds=spec.max_queue_delay_us,
    )


def warmups(inputs: Sequence[TensorSpec], spec: WarmupSpec) -> list[mc.ModelWarmup]:
    """One zero-data warm-up sample per batch size; -1 dims take `spec.dynamic_dim`."""
    out = []
    for size in spec.batch_sizes:
        out.append(
            mc.ModelWarmup(
                name=f"zeros_batch_{size}",
                batch_size=size,
                count=1,
                inputs={
                    t.name: mc.ModelWarmup.Input(
                        data_type=_data_type(t.dtype),
                        dims=[spec.dynamic_dim if d == -1 else d for d in wire_dims(t.shape)],
                        zero_data=True,
                    )
                    for t in inputs
                },
            )
        )
    return out


KIND = {"cpu": mc.ModelInstanceGroup.KIND_CPU, "gpu": mc.ModelInstanceGroup.KIND_GPU, "auto": mc.ModelInstanceGroup.KIND_AUTO}


@dataclass(frozen=True)
class Scheduling:
    """What every computing model shares: batching, instances, warm-up."""

    max_batch_size: int
    dynamic_batching: DynamicBatchingSpec
    instance_count: int
    instance_kind: str  # cpu | gpu | auto
    warmup: WarmupSpec | None


def _apply_scheduling(cfg: mc.ModelConfig, inputs: Sequence[TensorSpec], s: Scheduling) -> None:
    cfg.max_batch_size = s.max_batch_size
    batching = dynamic_batching(s.dynamic_batching)
    if batching is not None:
        cfg.dynamic_batching.CopyFrom(batching)
    cfg.instance_group.append(mc.ModelInstanceGroup(count=s.instance_count, kind=KIND[s.instance_kind]))
    if s.warmup is not None:
        cfg.model_warmup.extend(warmups(inputs, s.warmup))


def _io(cfg: mc.ModelConfig, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    cfg.input.extend(model_input(t) for t in inputs)
    cfg.output.extend(model_output(t) for t in outputs)


def _parameters(cfg: mc.ModelConfig, params: Mapping[str, str]) -> None:
    for key in sorted(params):
        cfg.parameters[key].string_value = str(params[key])


def python_model(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    scheduling: Scheduling,
    parameters: Mapping[str, str] | None = None,
) -> mc.ModelConfig:
    """A Python-backend model (model.py in the version directory)."""
    cfg = mc.ModelConfig(name=name, backend="python")
    _io(cfg, inputs, outputs)
    _apply_scheduling(cfg, inputs, scheduling)
    _parameters(cfg, parameters or {})
    return cfg


def onnxruntime_model(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    scheduling: Scheduling,
    filename: str = "model.onnx",
    parameters: Mapping[str, str] | None = None,
) -> mc.ModelConfig:
    """A model for Triton's ONNX Runtime backend (not present in the local CPU server; present in NGC containers)."""
    cfg = mc.ModelConfig(name=name, backend="onnxruntime", default_model_filename=filename)
    _io(cfg, inputs, outputs)
    _apply_scheduling(cfg, inputs, scheduling)
    _parameters(cfg, parameters or {})
    return cfg


def tensorrt_model(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    scheduling: Scheduling,
    cc_filenames: Mapping[str, str],
) -> mc.ModelConfig:
    """A TensorRT plan model; one plan per GPU compute capability (plans are not portable)."""
    cfg = mc.ModelConfig(name=name, platform="tensorrt_plan")
    for cc in sorted(cc_filenames):
        cfg.cc_model_filenames[cc] = cc_filenames[cc]
    _io(cfg, inputs, outputs)
    _apply_scheduling(cfg, inputs, scheduling)
    return cfg


def pytorch_model(
    name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], scheduling: Scheduling
) -> mc.ModelConfig:
    """A TorchScript model (torch-tensorrt compiled) for Triton's PyTorch backend."""
    cfg = mc.ModelConfig(name=name, platform="pytorch_libtorch", default_model_filename="model.pt")
    _io(cfg, inputs, outputs)
    _apply_scheduling(cfg, inputs, scheduling)
    return cfg


@dataclass(frozen=True)
class EnsembleStep:
    """One step of an ensemble: a model at a version, its inputs and outputs mapped to the ensemble's tensors
    (the model's tensor name -> the ensemble's)."""

    model: str
    version: int
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


def ensemble_model(
    name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], max_batch_size: int, steps: Sequence[EnsembleStep]
) -> mc.ModelConfig:
    """A Triton ensemble: requests flow through `steps`, each step's outputs feeding the next ones' inputs."""
    cfg = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    _io(cfg, inputs, outputs)
    for step in steps:
        cfg.ensemble_scheduling.step.append(
            mc.ModelEnsembling.Step(
                model_name=step.model,
                model_version=step.version,
                input_map=dict(step.inputs),
                output_map=dict(step.outputs),
            )
        )
    return cfg


def pin_version(cfg: mc.ModelConfig, version: int) -> None:
    """Serve exactly `version`: a config and a version directory of different builds then never load together (a
    load that meets a half-published model fails and the loaded version keeps serving)."""
    cfg.version_policy.specific.versions[:] = [version]


def to_text(cfg: mc.ModelConfig) -> str:
    """Deterministic text form of a config."""
    text = text_format.MessageToString(cfg, use_short_repeated_primitives=True)
    return text if text.endswith("\n") else text + "\n"


def write_config(cfg: mc.ModelConfig, model_dir: Path) -> Path:
    path = model_dir / "config.pbtxt"
    path.write_text(to_text(cfg))
    return path


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt back into ModelConfig; errors name the file."""
    try:
        return text_format.Parse(Path(path).read_text(), mc.ModelConfig())
    except (OSError, text_format.ParseError) as e:
        raise RepositoryError(f"{path}: not a valid Triton model config: {e}") from None
