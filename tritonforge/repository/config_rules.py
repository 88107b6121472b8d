"""Triton's rules for a model config, checked without a server that has the model's backend.

The local server has no onnxruntime or tensorrt backend: it reports those models UNAVAILABLE for that reason
before it looks at their configs, so a config a container would refuse goes unnoticed there. These are the
rules Triton applies when it loads such a model (core `model_config_utils.cc`, the onnxruntime backend's
checks of the config against the graph): every tensor has dims (or a reshape), the batch dimension and the
graph agree, names and data types are the graph's, warm-up samples and batch sizes fit the config.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge import dtypes


def _model_dims(t: mc.ModelInput | mc.ModelOutput) -> list[int]:
    """The dims the model itself sees (after the config's reshape), without the batch dim."""
    return list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)


def config_problems(config: mc.ModelConfig) -> list[str]:
    """What Triton would refuse in `config` on its own (no model file needed)."""
    tensors = [("input", t) for t in config.input] + [("output", t) for t in config.output]
    problems = [p for kind, t in tensors for p in _tensor_problems(kind, t)]
    names = [t.name for _, t in tensors]
    problems += [f"tensor name '{n}' is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    problems += _batching_problems(config)
    for warmup in config.model_warmup:
        problems += _warmup_problems(config, warmup)
    return problems


def _tensor_problems(kind: str, t: mc.ModelInput | mc.ModelOutput) -> list[str]:
    """One input's or output's own dims, data type and reshape."""
    problems = []
    if not t.dims:
        problems.append(
            f"{kind} '{t.name}' must specify 'dims' (a per-sample scalar is dims: [1] with reshape: {{{{ shape: [] }}}})"
        )
    if any(d == 0 or d < -1 for d in t.dims):
        problems.append(f"{kind} '{t.name}' has dims {list(t.dims)}: each must be positive or -1")
    if t.data_type == mc.TYPE_INVALID:
        problems.append(f"{kind} '{t.name}' has no data_type")
    if t.HasField("reshape") and -1 not in t.dims and -1 not in t.reshape.shape:
        size = _product(t.dims)
        if size != _product(t.reshape.shape):
            problems.append(
                f"{kind} '{t.name}': reshape {list(t.reshape.shape)} does not hold the {size} element(s) of dims {list(t.dims)}"
            )
    return problems


def _batching_problems(config: mc.ModelConfig) -> list[str]:
    """max_batch_size, and the dynamic batcher against it."""
    problems = []
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size {config.max_batch_size} is negative")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append("dynamic_batching needs max_batch_size > 0")
        big = [b for b in config.dynamic_batching.preferred_batch_size if b > config.max_batch_size]
        if big:
            problems.append(f"preferred_batch_size {big} exceeds max_batch_size {config.max_batch_size}")
    return problems


def _warmup_problems(config: mc.ModelConfig, warmup: mc.ModelWarmup) -> list[str]:
    """One warm-up sample set: its batch size, and a sample of the declared type and dims for every input."""
    problems = []
    where = f"model_warmup '{warmup.name}'"
    if config.max_batch_size and not 1 <= warmup.batch_size <= config.max_batch_size:
        problems.append(f"{where}: batch_size {warmup.batch_size} is outside 1..{config.max_batch_size}")
    inputs = {t.name: t for t in config.input}
    for name, sample in warmup.inputs.items():
        declared = inputs.get(name)
        if declared is None:
            problems.append(f"{where}: input '{name}' is not an input of the model")
            continue
        if sample.data_type != declared.data_type:
            problems.append(
                f"{where}: input '{name}' is {mc.DataType.Name(sample.data_type)}, the model "
                f"takes {mc.DataType.Name(declared.data_type)}"
            )
        if not _fits(list(sample.dims), list(declared.dims)):
            problems.append(f"{where}: input '{name}' has dims {list(sample.dims)}, the model takes {list(declared.dims)}")
    missing = sorted(set(inputs) - set(warmup.inputs))
    if missing:
        problems.append(f"{where}: no data for input(s) {missing}")
    return problems


def onnx_config_problems(config: mc.ModelConfig, onnx_path: Path) -> list[str]:
    """What Triton's onnxruntime backend would refuse: config tensors that are not the graph's (name, data
    type, rank, fixed dims), and a batching config whose graph has a fixed first dim."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    problems = []
    for kind, declared, actual in (
        ("input", config.input, [v for v in graph.input if v.name not in initializers]),
        ("output", config.output, list(graph.output)),
    ):
        found = {v.name: v for v in actual}
        for t in declared:
            v = found.get(t.name)
            if v is None:
                problems.append(f"{kind} '{t.name}' is not an {kind} of {onnx_path.name} (it has {sorted(found)})")
                continue
            tensor_type = v.type.tensor_type
            graph_type = dtypes.BY_ONNX.get(tensor_type.elem_type)
            if graph_type is None or mc.DataType.Value(graph_type.triton) != t.data_type:
                problems.append(
                    f"{kind} '{t.name}' is {mc.DataType.Name(t.data_type)} in the config, "
                    f"{graph_type.triton if graph_type else tensor_type.elem_type} in the graph"
                )
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
            expected = _model_dims(t)
            if config.max_batch_size > 0:
                if not dims or dims[0] not in (-1,):
                    problems.append(
                        f"{kind} '{t.name}': max_batch_size {config.max_batch_size} needs a dynamic "
                        f"first dim in the graph, which has {dims}"
                    )
                    continue
                dims = dims[1:]
            if len(dims) != len(expected) or not _fits(dims, expected, either_dynamic=True):
                problems.append(
                    f"{kind} '{t.name}': the config's dims {expected} (after reshape, without the "
                    f"batch dim) do not match the graph's {dims}"
                )
        missing = sorted(set(found) - {t.name for t in declared}) if kind == "input" else []
        if missing:
            problems.append(f"the graph's input(s) {missing} are not in the config")
    return problems


def _fits(dims: list[int], declared: list[int], either_dynamic: bool = False) -> bool:
    if len(dims) != len(declared):
        return False
    return all(d == e or e == -1 or (either_dynamic and d == -1) for d, e in zip(dims, declared, strict=True))


def _product(dims: Iterable[int]) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out
