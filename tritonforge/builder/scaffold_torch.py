"""`tritonforge init` for torch models: the signature of a `module:callable` factory, a TorchScript file or a `.pt2`.

A module carries no signature, so it is read from the samples and from the model itself:

- the module runs on every sample batch (`--samples` may hold batches of several lengths, keys PREFIX/NAME as
  the data loader reads them): dtypes, output names (a dict's keys, e.g. a transformers ModelOutput's `logits`,
  a namedtuple's fields), and the dims that differ between batches (-1);
- it is exported to ONNX as the build exports it (dynamo, every dim dynamic where the model lets it be) and the
  graph is read as an ONNX file is: the dims the exporter keeps symbolic are -1, inputs whose dims share a
  symbol share a dim name (`sequence`), and an integer input that indexes an embedding table gets the range
  [0, rows - 1]. When the export fails, the samples and forward hooks on the module's nn.Embedding layers give
  the same facts, less surely (a note says so).

A range seen only in the samples' min/max is never made active: `scaffold.spec_text` writes it as a comment.
"""

from __future__ import annotations

import inspect
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge import dtypes
from tritonforge.builder.scaffold import Signature, Tensor, _embedding_ranges, _onnx_dims
from tritonforge.errors import SpecError
from tritonforge.serving.batching import Batch

SEQUENCE = "sequence"  # the name of the first dynamic dim found at axis 1 (token ids, time steps)


@dataclass
class _Graph:
    """What the ONNX export of the module says: per-item dims (int, or the exporter's symbol) and ranges."""

    inputs: dict[str, list[int | str]]
    outputs: list[list[int | str]]
    ranges: dict[str, tuple[tuple[float, float], str]]


def _input_order(module, names: list[str], where: str) -> list[str]:
    """The inputs in the order of forward's arguments (the build passes them positionally), else the file's."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return names
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not set(names) <= set(positional):
        return names
    ordered = sorted(names, key=positional.index)
    if ordered != positional[: len(names)]:
        raise SpecError(
            f"{where}: the build passes the inputs positionally, so the samples' arrays {ordered} must "
            f"be forward's first arguments, in order (forward takes {positional})"
        )
    return ordered


def _flatten(result, prefix: str = "") -> list[tuple[str, object]]:
    """(name, tensor) for every tensor the model returns, in the order the ONNX export flattens them."""
    import torch

    if isinstance(result, torch.Tensor):
        return [(prefix or "output", result)]
    if result is None:
        return []
    if isinstance(result, dict):  # transformers' ModelOutput is an OrderedDict without its None fields
        items = [(str(k), v) for k, v in result.items()]
    elif isinstance(result, tuple) and hasattr(result, "_fields"):  # a namedtuple
        items = list(zip(result._fields, result, strict=True))
    elif isinstance(result, (tuple, list)):
        items = [(str(i) if prefix else f"output{i}", v) for i, v in enumerate(result)]
    else:
        raise SpecError(
            f"the model returns a {type(result).__name__}{f' as {prefix!r}' if prefix else ''}: only "
            "tensors (alone or in dicts, namedtuples, tuples) can be served"
        )
    return [pair for key, value in items for pair in _flatten(value, f"{prefix}_{key}" if prefix else key)]


def _torch_dtype(t) -> str:
    return dtypes.from_numpy(t.detach().cpu().numpy().dtype).name


def _run(module, names: list[str], batches: list[Batch], where: str):
    """Run the module on every batch: its results, and the rows of each embedding table an input indexes."""
    import torch

    seen: dict[int, int] = {}  # id(tensor fed to an nn.Embedding) -> its rows
    hooks = []

    def hook(layer, args):
        if args and isinstance(args[0], torch.Tensor):
            seen[id(args[0])] = min(seen.get(id(args[0]), layer.num_embeddings), layer.num_embeddings)

    for layer in module.modules():
        if isinstance(layer, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
            hooks.append(layer.register_forward_pre_hook(hook))
    results: list[Any] = []
    rows: dict[Any, Any] = {}
    try:
        for i, batch in enumerate(batches):
            args = [torch.from_numpy(np.ascontiguousarray(batch[n])) for n in names]
            try:
                with torch.no_grad():
                    out = module(*args)
            except Exception as e:
                raise SpecError(
                    f"{where}: the model raised {type(e).__name__} on sample batch {i} "
                    f"({', '.join(f'{n}{list(a.shape)}' for n, a in zip(names, args, strict=True))}): {e}"
                ) from None
            results.append(_flatten(out))
            for n, a in zip(names, args, strict=True):
                if id(a) in seen:
                    rows[n] = min(rows.get(n, seen[id(a)]), seen[id(a)])
            seen.clear()
    finally:
        for h in hooks:
            h.remove()
    return results, rows


def _export(module, names: list[str], out_names: list[str], batch: Batch) -> _Graph:
    """Export to ONNX as the build does, every dim dynamic where the model allows, and read the graph."""
    import onnx
    import torch

    from tritonforge.builder.exporters.torch2onnx import _quiet

    if isinstance(module, torch.jit.ScriptModule):
        raise SpecError("a TorchScript module cannot be exported with dynamic shapes by the dynamo exporter")
    args = []
    for n in names:  # a batch of at least 2 samples, else the exporter fixes the batch dim at 1
        a = batch[n] if len(batch[n]) > 1 else np.concatenate([batch[n], batch[n]])
        args.append(torch.from_numpy(np.ascontiguousarray(a)))
    auto = torch.export.Dim.AUTO
    dynamic = tuple({axis: auto for axis in range(a.dim())} for a in args)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        path = Path(tmp) / "model.onnx"
        program = torch.onnx.export(
            module,
            tuple(args),
            str(path),
            dynamo=True,
            external_data=False,
            verbose=False,
            input_names=names,
            output_names=out_names,
            dynamic_shapes=dynamic,
        )
        model = onnx.load(str(path))
    inputs = {vi.name: _onnx_dims(vi)[0] for vi in model.graph.input}
    outputs = [_onnx_dims(vi)[0] for vi in model.graph.output]
    if [n for n in names if n not in inputs] or len(outputs) != len(out_names):
        raise SpecError(
            f"the exported graph has inputs {list(inputs)} and {len(outputs)} output(s), not {names} and {len(out_names)}"
        )
    fixed = _fixed_symbols(program)  # symbols the exporter bounded to one size are that size
    inputs = {n: [fixed.get(d, d) if isinstance(d, str) else d for d in dims] for n, dims in inputs.items()}
    outputs = [[fixed.get(d, d) if isinstance(d, str) else d for d in dims] for dims in outputs]
    for n in names:
        if isinstance(inputs[n][0], int):
            raise SpecError(f"the export fixed the batch dim of '{n}' at {inputs[n][0]}")
    return _Graph({n: d[1:] for n, d in inputs.items()}, [d[1:] for d in outputs], _embedding_ranges(model))


def _fixed_symbols(program) -> dict[str, int]:
    """The graph's dim symbols whose range the exporter narrowed to one value (it may keep the symbol)."""
    out = {}
    for sym, bounds in getattr(getattr(program, "exported_program", None), "range_constraints", {}).items():
        try:
            if int(bounds.lower) == int(bounds.upper):
                out[str(sym)] = int(bounds.upper)
        except (TypeError, ValueError, OverflowError, AttributeError):  # unbounded (int_oo)
            pass
    return out


def _root_cause(e: BaseException) -> str:
    """'Type: first line' of the exception at the bottom of the chain (the exporter wraps the model's own)."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # the exporter colours its messages
    return f"{type(e).__name__}: {(text.splitlines() or [''])[0][:300]}"


def _shape(where: str, name: str, arrays: list) -> tuple[list[int], list[tuple[int, ...]]]:
    """Per-item shape over the batches (-1 where they differ) and each dim's sizes batch by batch."""
    ranks = {a.ndim for a in arrays}
    if len(ranks) != 1 or 0 in ranks:
        raise SpecError(
            f"{where}: '{name}' must have one rank in every batch, batch first; got shapes {[list(a.shape) for a in arrays]}"
        )
    sizes = [tuple(int(a.shape[axis]) for a in arrays) for axis in range(1, arrays[0].ndim)]
    return [s[0] if len(set(s)) == 1 else -1 for s in sizes], sizes


def _dynamic_dims(shape: list[int], sizes: list[tuple[int, ...]], exported: list[int | str]) -> list[tuple[int, object]]:
    """Mark -1 (in place) the dims that differ between the batches or that the export keeps symbolic, and give
    each one's (axis, key): the exporter's symbol, else ('samples', axis, its sizes batch by batch)."""
    out: list[tuple[int, object]] = []
    for axis, s in enumerate(sizes, start=1):
        symbol = exported[axis - 1] if exported and isinstance(exported[axis - 1], str) else None
        if shape[axis - 1] == -1 or symbol is not None:
            shape[axis - 1] = -1
            out.append((axis, symbol or ("samples", axis, s)))
    return out


class _DimNames:
    """One name per length: dims with one key share a name, the first found at axis 1 `sequence`, the others
    '<input>_dim<axis>'."""

    def __init__(self) -> None:
        self.names: dict[object, str] = {}

    def name(self, key: object, tensor: str, axis: int) -> str:
        if key not in self.names:
            used = set(self.names.values())
            self.names[key] = SEQUENCE if axis == 1 and SEQUENCE not in used else f"{tensor}_dim{axis}"
        return self.names[key]


def _try_export(module, names: list[str], out_names: list[str], batches: list[Batch]) -> tuple[_Graph | None, str]:
    """The export's graph (None when it fails) and a note on where the signature came from."""
    try:
        graph = _export(module, names, out_names, max(batches, key=lambda b: len(b[names[0]])))
    except Exception as e:
        return None, (
            f"the module did not export to ONNX here ({_root_cause(e)}): dims and ranges come from the "
            "samples and the module's nn.Embedding layers alone"
        )
    return graph, (
        "dims, dim names and ranges come from the module exported to ONNX (as the build exports it) and "
        f"from the samples' {len(batches)} batch(es)"
    )


def from_module(module, source: dict, batches: list[Batch], where: str, output_names: list[str] | None = None) -> Signature:
    """The signature of a torch module, from running it on the sample batches and exporting it to ONNX."""
    if not batches:
        raise SpecError(
            f"{where}: a TorchScript file or a factory carries no signature: give --samples FILE.npz "
            "with one array per input (named as forward's arguments, batch first; batches of several "
            "lengths as keys PREFIX/NAME: b0/input_ids, b0/attention_mask, b1/input_ids, ...)"
        )
    names = _input_order(module, list(batches[0]), where)
    results, hook_rows = _run(module, names, batches, where)
    out_names = [n for n, _ in results[0]]
    if output_names is not None:
        if len(output_names) != len(out_names):
            raise SpecError(
                f"--output-names gives {len(output_names)} name(s) for the model's {len(out_names)} "
                f"output(s) ({', '.join(out_names)})"
            )
        out_names = list(output_names)
    graph, note = _try_export(module, names, out_names, batches)
    notes = [note]
    dim_names = _DimNames()
    inputs = []
    for n in names:
        shape, sizes = _shape(where, n, [b[n] for b in batches])
        exported = graph.inputs[n] if graph else []
        fixed = [(axis, d) for axis, d in enumerate(exported, start=1) if isinstance(d, int) and shape[axis - 1] == -1]
        notes += [
            f"'{n}' varies along axis {axis} in the samples, but the export fixed it at {d}: the build's export may too"
            for axis, d in fixed
        ]
        dims = [dim_names.name(key, n, axis) for axis, key in _dynamic_dims(shape, sizes, exported)]
        ranges = ([graph.ranges[n]] if graph and n in graph.ranges else []) + (
            [((0, hook_rows[n] - 1), f"indexes the {hook_rows[n]} rows of an nn.Embedding")] if n in hook_rows else []
        )
        bounds, range_note = min(ranges, key=lambda r: r[0][1]) if ranges else (None, "")
        inputs.append(Tensor(n, dtypes.from_numpy(batches[0][n].dtype).name, shape, bounds, range_note, dims))
    outputs = []
    for i, name in enumerate(out_names):
        arrays = [r[i][1] for r in results]
        shape, sizes = _shape(where, name, arrays)
        keys = [key for _, key in _dynamic_dims(shape, sizes, graph.outputs[i] if graph else [])]
        named = next((k for k, key in enumerate(keys) if key not in dim_names.names), len(keys))
        # an output's dims of an input's length take its name; dim_names stop at the first dim without one
        outputs.append(Tensor(name, _torch_dtype(arrays[0]), shape, dim_names=[dim_names.names[k] for k in keys[:named]]))
    if graph is None and len({tuple(b[n].shape[1:] for n in names) for b in batches}) == 1:
        notes.append(
            "the samples have one shape: mark the dims that vary (sequence lengths) as -1, or give "
            "batches of several lengths (keys PREFIX/NAME)"
        )
    return Signature(source, inputs, outputs, notes)


def from_exported_program(path: Path) -> Signature:
    import torch

    try:
        program = torch.export.load(str(path))  # unpickles: a .pt2 is trusted code
    except Exception as e:
        raise SpecError(f"{path}: not a loadable ExportedProgram (.pt2): {e}") from None
    names = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}

    def tensor(name: str, val) -> Tensor:
        dims = [int(d) if isinstance(d, int) or str(d).isdigit() else -1 for d in val.shape]
        if dims and dims[0] > 1:
            raise SpecError(
                f"{path}: tensor '{name}' has a fixed first dimension ({dims[0]}): export with a "
                "dynamic batch dimension (dynamic_shapes with torch.export.Dim on axis 0)"
            )
        return Tensor(name, dtypes.from_numpy(np.dtype(str(val.dtype).removeprefix("torch."))).name, dims[1:])

    inputs = [tensor(n, placeholders[n].meta["val"]) for n in names]
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    vals = [a.meta["val"] for a in out_node.args[0]]
    outputs = [tensor(f"output{i}" if len(vals) > 1 else "output", v) for i, v in enumerate(vals)]
    return Signature({"kind": "exported_program", "path": str(path)}, inputs, outputs)
