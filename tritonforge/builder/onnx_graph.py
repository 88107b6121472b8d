"""Checks and small edits on ONNX graphs: rename I/O to the spec's names, pin the IR version, check, infer shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tritonforge import dtypes
from tritonforge.errors import ExportError
from tritonforge.spec import BuildSpec, TensorSpec


def _all_value_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.input} | {o.name for o in graph.output} | {i.name for i in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _rename_everywhere(graph: onnx.GraphProto, old: str, new: str) -> None:
    for coll in (graph.input, graph.output, graph.value_info, graph.initializer):
        for v in coll:
            if v.name == old:
                v.name = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for attr in node.attribute:  # subgraphs (If/Loop/Scan) may refer to outer values
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_everywhere(g, old, new)


def rename_io(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> None:
    """Rename the graph's inputs and outputs, in order, to the given names.

    A target name already used by an internal value (exporters name values after modules) is first moved aside.
    """
    graph = model.graph
    feeds = [i.name for i in graph.input if i.name not in {init.name for init in graph.initializer}]
    if len(feeds) != len(inputs):
        raise ExportError(f"exported graph has {len(feeds)} inputs {feeds}; the spec names {len(inputs)}: {inputs}")
    if len(graph.output) != len(outputs):
        got = [o.name for o in graph.output]
        raise ExportError(f"exported graph has {len(got)} outputs {got}; the spec names {len(outputs)}: {outputs}")
    mapping = dict(zip(feeds, inputs, strict=True)) | dict(zip([o.name for o in graph.output], outputs, strict=True))
    used = _all_value_names(graph)
    for old, new in mapping.items():
        if old == new:
            continue
        if new in used:
            aside = f"{new}__internal"
            while aside in used:
                aside += "_"
            _rename_everywhere(graph, new, aside)
            used.add(aside)
        _rename_everywhere(graph, old, new)
        used.add(new)


def name_dims(model: onnx.ModelProto, spec) -> None:
    """Give the graph's symbolic dims the spec's names: the first dim of every input and output 'batch', the
    dynamic dims of each input its `dim_names` (else '<input>_dim<axis>'), everywhere the exporter's name (s0,
    s77, ...) appears, so inputs of one length share one name, and outputs that follow an input's length show it."""
    renames: dict[str, str] = {}
    declared = {t.name: t for t in spec.inputs}

    def name(dim, new: str) -> None:
        if dim.HasField("dim_value"):
            return
        if dim.dim_param and dim.dim_param not in renames:
            renames[dim.dim_param] = new
        dim.dim_param = renames.get(dim.dim_param, new) if dim.dim_param else new

    for v in model.graph.input:
        dims = v.type.tensor_type.shape.dim
        if not dims:
            continue
        name(dims[0], "batch")
        t = declared.get(v.name)
        given = list(t.dim_names) if t is not None else []
        for axis, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value"):
                name(dim, given.pop(0) if given else f"{v.name}_dim{axis}")
    for is_output, values in ((True, model.graph.output), (False, model.graph.value_info)):
        for v in values:
            for axis, dim in enumerate(v.type.tensor_type.shape.dim):
                if dim.HasField("dim_value"):
                    continue
                if dim.dim_param in renames:
                    dim.dim_param = renames[dim.dim_param]
                elif is_output:
                    dim.dim_param = "batch" if axis == 0 else f"{v.name}_dim{axis}"


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs (some converters append nodes at the end)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes, ordered = list(graph.node), []
    while nodes:
        ready = [n for n in nodes if all(i in available for i in n.input)]
        if not ready:  # a cycle or an input produced inside a subgraph: keep the rest in their order
            ordered.extend(nodes)
            break
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        ready_ids = {id(n) for n in ready}
        nodes = [n for n in nodes if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)


def pin_ir_version(model: onnx.ModelProto, ir_version: int) -> None:
    """Lower the IR version so older runtimes (ONNX Runtime in older Triton containers) load the file."""
    if model.ir_version > ir_version:
        model.ir_version = ir_version


def prune_opset_imports(model: onnx.ModelProto) -> None:
    """Drop opset imports of domains no node uses (quantizers import a dozen; older runtimes reject some)."""
    used = {n.domain or "" for n in model.graph.node} | {""}
    for func in model.functions:
        used |= {n.domain or "" for n in func.node} | {func.domain}
    keep = [o for o in model.opset_import if (o.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def finalize_variant(path: Path, ir_version: int) -> None:
    """Make a converted ONNX file loadable by the runtimes of older Triton containers: unused opset imports
    removed, IR version pinned (kept as it was if the checker rejects the lower one)."""
    model = onnx.load(str(path))
    prune_opset_imports(model)
    original = model.ir_version
    pin_ir_version(model, ir_version)
    try:
        onnx.checker.check_model(model)
    except Exception:
        model.ir_version = original
    onnx.save(model, str(path))


def _check_tensor(v: onnx.ValueInfoProto, t: TensorSpec, where: str, field: str = "") -> None:
    tt = v.type.tensor_type
    want = dtypes.by_name(t.dtype).onnx
    if tt.elem_type != want:
        got = onnx.TensorProto.DataType.Name(tt.elem_type)
        theirs = dtypes.BY_ONNX.get(tt.elem_type)
        raise ExportError(
            f"{where} '{t.name}': ONNX type {got}, the spec says {t.dtype}"
            + (f" (field '{field}.dtype'" + (f"; the model computes {theirs.name})" if theirs else ")") if field else "")
        )
    if tt.HasField("shape"):
        dims = tt.shape.dim
        if len(dims) != len(t.shape) + 1:
            raise ExportError(f"{where} '{t.name}': ONNX rank {len(dims)}, the spec says [batch] + {t.shape}")
        if dims[0].HasField("dim_value") and dims[0].dim_value != 0:
            raise ExportError(f"{where} '{t.name}': batch dim is fixed at {dims[0].dim_value}; it must be dynamic")
        for i, (d, s) in enumerate(zip(dims[1:], t.shape, strict=True)):
            if s == -1 and d.HasField("dim_value"):
                raise ExportError(f"{where} '{t.name}': dim {i + 1} was fixed at {d.dim_value} by the export; the spec says -1")
            if s != -1 and d.HasField("dim_value") and d.dim_value != s:
                raise ExportError(f"{where} '{t.name}': dim {i + 1} is {d.dim_value}, the spec says {s}")


def check_against_spec(model: onnx.ModelProto, spec: BuildSpec) -> None:
    """The graph's inputs and outputs have the spec's names, types and ranks, with a dynamic batch dim."""
    inits = {i.name for i in model.graph.initializer}
    feeds = {i.name: i for i in model.graph.input if i.name not in inits}
    outs = {o.name: o for o in model.graph.output}
    for i, t in enumerate(spec.inputs):
        if t.name not in feeds:
            raise ExportError(f"ONNX graph has no input '{t.name}' (inputs: {sorted(feeds)})")
        _check_tensor(feeds[t.name], t, "input", f"inputs[{i}]")
    for i, t in enumerate(spec.outputs):
        if t.name not in outs:
            raise ExportError(f"ONNX graph has no output '{t.name}' (outputs: {sorted(outs)})")
        _check_tensor(outs[t.name], t, "output", f"outputs[{i}]")


def load_checked(path: Path) -> onnx.ModelProto:
    """Load an ONNX file and run the full checker (with strict shape inference)."""
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ExportError(f"{path}: not a readable ONNX file: {e}") from None
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise ExportError(f"{path}: onnx.checker rejected the model: {e}") from None
    return model


def finalize(model: onnx.ModelProto, spec: BuildSpec, out_path: Path) -> onnx.ModelProto:
    """Pin IR version, infer shapes, check against the spec and the ONNX checker, save to `out_path`."""
    pin_ir_version(model, spec.export.ir_version)
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=False, data_prop=True)
    except Exception as e:
        raise ExportError(f"shape inference failed on the exported graph: {e}") from None
    check_against_spec(model, spec)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise ExportError(f"onnx.checker rejected the exported graph: {e}") from None
    onnx.save(model, str(out_path))
    return model


_FLOATS = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.DOUBLE: np.float64}


def _subnormal_mask(arr: np.ndarray) -> np.ndarray:
    return (arr != 0) & (np.abs(arr) < np.finfo(arr.dtype).tiny)


def subnormal_initializers(model: onnx.ModelProto) -> dict[str, int]:
    """Float weights below the smallest normal number of their type, counted per tensor (tensors with any)."""
    from onnx import numpy_helper

    out = {}
    for init in model.graph.initializer:
        if init.data_type in _FLOATS:
            count = int(_subnormal_mask(numpy_helper.to_array(init)).sum())
            if count:
                out[init.name] = count
    return out


def flush_subnormal_initializers(model: onnx.ModelProto) -> dict[str, int]:
    """Set subnormal float weights to zero in place; returns how many per tensor."""
    from onnx import numpy_helper

    flushed = {}
    for init in model.graph.initializer:
        if init.data_type not in _FLOATS:
            continue
        arr = numpy_helper.to_array(init)
        mask = _subnormal_mask(arr)
        if mask.any():
            arr = np.where(mask, np.zeros((), arr.dtype), arr)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            flushed[init.name] = int(mask.sum())
    return flushed
