"""`tritonforge init`: a commented build spec read from the model itself.

The signature (names, dtypes, shapes with -1 for dynamic dims, the batch axis) comes from an ONNX file's graph,
a `.pt2`'s ExportedProgram, or, for TorchScript files and `module:callable` factories (which carry no
signature), from running the model on an example batch. An integer input that indexes an embedding table in
the graph gets the table's rows as its range. A range seen only in the samples' min/max is written as a comment
to uncomment, never as an active range: the samples need not hold every valid value. Loading a TorchScript file, a `.pt2` or a factory runs the model's code: give
only models you trust.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritonforge import dtypes
from tritonforge.errors import SpecError

DEFAULT_MAX_BATCH = 64


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: list[int]  # per item, without the batch dim; -1 = dynamic
    range: tuple[float, float] | None = None
    range_note: str = ""
    dim_names: list[str] = field(default_factory=list)  # names of the -1 dims, when the model has them
    suggested_range: tuple[float, float] | None = None  # the samples' min/max: written as a comment only


@dataclass
class Signature:
    source: dict  # the spec's `source` section
    inputs: list[Tensor]
    outputs: list[Tensor]
    notes: list[str] = field(default_factory=list)


def _spec_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", text).strip("_-") or "model"
    return name if name[0].isalpha() else f"m_{name}"


# ---- ONNX --------------------------------------------------------------------------------------------
def _onnx_dims(value_info) -> tuple[list[int | str], str]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims, dtypes.BY_ONNX[value_info.type.tensor_type.elem_type].name


def _per_item(name: str, dims: list[int | str], where: str) -> tuple[list[int], list[str]]:
    if not dims:
        raise SpecError(f"{where}: tensor '{name}' is a scalar; Triton batches along a first dimension")
    if isinstance(dims[0], int) and dims[0] > 0:
        raise SpecError(f"{where}: tensor '{name}' has a fixed first dimension ({dims[0]}), so no batch axis; "
                        "export it with a dynamic batch dimension (dynamic_axes / dynamic_shapes on axis 0)")
    shape = [d if isinstance(d, int) and d > 0 else -1 for d in dims[1:]]
    names = [d for d in dims[1:] if isinstance(d, str) and d != "?" and not re.fullmatch(r"s\d+|unk__\d+", d)]
    return shape, names


def _embedding_ranges(model) -> dict[str, tuple[tuple[float, float], str]]:
    """Graph inputs used as the indices of a Gather over an initializer: [0, rows - 1]."""
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    out = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in inits and node.input[1] in inputs:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            rows = inits[node.input[0]][axis]
            out[node.input[1]] = ((0, rows - 1), f"indexes the {rows} rows of '{node.input[0]}'")
    return out


def from_onnx(path: Path) -> Signature:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise SpecError(f"{path}: not a readable ONNX file: {e}") from None
    initializers = {i.name for i in model.graph.initializer}
    ranges = _embedding_ranges(model)
    inputs, outputs = [], []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims, dtype = _onnx_dims(vi)
        shape, names = _per_item(vi.name, dims, str(path))
        bounds, note = ranges.get(vi.name, (None, ""))
        inputs.append(Tensor(vi.name, dtype, shape, bounds, note, names))
    for vi in model.graph.output:
        dims, dtype = _onnx_dims(vi)
        shape, names = _per_item(vi.name, dims, str(path))
        outputs.append(Tensor(vi.name, dtype, shape, dim_names=names))
    return Signature({"kind": "onnx", "path": str(path)}, inputs, outputs)


# ---- PyTorch --------------------------------------------------------------------------------------------
def _torch_dtype(t) -> str:
    return dtypes.from_numpy(t.detach().cpu().numpy().dtype).name


def _outputs_of(result, names: list[str] | None = None) -> list[tuple[str, object]]:
    if isinstance(result, dict):
        return list(result.items())
    if isinstance(result, (tuple, list)):
        return [(names[i] if names and i < len(names) else f"output{i}", r) for i, r in enumerate(result)]
    return [((names or ["output"])[0], result)]


def from_example(module, source: dict, example: dict[str, np.ndarray], where: str) -> Signature:
    """The signature of a torch module run on `example` (input names: the example's keys, in order)."""
    import torch

    if not example:
        raise SpecError(f"{where}: a TorchScript file or a factory carries no signature: give --samples FILE.npz "
                        "with one array per input (named as the model's arguments, in order, batch first)")
    with torch.no_grad():
        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in example.values()]
        result = module(*args)
    inputs = [Tensor(n, dtypes.from_numpy(a.dtype).name, list(a.shape[1:])) for n, a in example.items()]
    outputs = [Tensor(n, _torch_dtype(t), list(t.shape[1:])) for n, t in _outputs_of(result)]
    notes = ["shapes were read from one example batch: mark the dims that vary (sequence lengths) as -1"]
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
            raise SpecError(f"{path}: tensor '{name}' has a fixed first dimension ({dims[0]}): export with a "
                            "dynamic batch dimension (dynamic_shapes with torch.export.Dim on axis 0)")
        return Tensor(name, dtypes.from_numpy(np.dtype(str(val.dtype).removeprefix("torch."))).name, dims[1:])

    inputs = [tensor(n, placeholders[n].meta["val"]) for n in names]
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    vals = [a.meta["val"] for a in out_node.args[0]]
    outputs = [tensor(f"output{i}" if len(vals) > 1 else "output", v) for i, v in enumerate(vals)]
    return Signature({"kind": "exported_program", "path": str(path)}, inputs, outputs)


def read_signature(model: str, base: Path, example: dict[str, np.ndarray]) -> Signature:
    """The signature of MODEL: a path (.onnx, .pt2, TorchScript) or 'module:callable'."""
    from tritonforge.build.spec import CALLABLE_REF

    if CALLABLE_REF.match(model) and not (base / model).exists():
        from tritonforge.build.imports import import_callable

        factory = import_callable(model, base, "MODEL")
        try:
            module = factory().eval()
        except Exception as e:
            raise SpecError(f"MODEL: {model} raised {type(e).__name__}: {e}") from None
        return from_example(module, {"kind": "pytorch", "factory": model}, example, model)
    path = Path(model)
    if not path.is_file():
        raise SpecError(f"MODEL: {model} is neither a file nor 'module:callable'")
    if path.suffix == ".onnx":
        return from_onnx(path)
    if path.suffix == ".pt2":
        return from_exported_program(path)
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()  # TorchScript is trusted code
    except Exception as e:
        raise SpecError(f"{path}: not an ONNX file (.onnx), an ExportedProgram (.pt2) or a TorchScript file: {e}") from None
    return from_example(module, {"kind": "torchscript", "path": str(path)}, example, str(path))


# ---- the spec ----------------------------------------------------------------------------------------
def _value(v) -> str:
    """A YAML flow value: a number, a word, or a one-line list."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _flow(d: dict) -> str:
    """A one-line YAML mapping."""
    return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in d.items()) + "}"


def _numbers(bounds: tuple[float, float]) -> list[int | float]:
    return [int(x) if float(x).is_integer() else float(x) for x in bounds]


def _tensor_lines(t: Tensor) -> list[str]:
    """One flow-style list item; block style when a range is suggested, so that uncommenting it is enough."""
    d: dict = {"name": t.name, "dtype": t.dtype, "shape": t.shape}
    if t.range is not None:
        d["range"] = _numbers(t.range)
    if t.dim_names:
        d["dim_names"] = t.dim_names
    comment = f"   # range: {t.range_note}" if t.range_note else ""
    if t.suggested_range is None:
        return [f"  - {_flow(d)}{comment}"]
    first, *rest = [f"{k}: {_value(v)}" for k, v in d.items()]
    return [f"  - {first}", *[f"    {line}" for line in rest],
            f"    # range: {_value(_numbers(t.suggested_range))}   # seen in the samples; uncomment to refuse values "
            "outside it (widen it to every value the model accepts)"]


def suggest_ranges(sig: Signature, samples: dict[str, np.ndarray]) -> None:
    """For integer inputs the model gives no range: the samples' min/max, as a suggestion (a comment) only."""
    for t in sig.inputs:
        arr = samples.get(t.name)
        if t.range is None and arr is not None and np.asarray(arr).dtype.kind in "iu" and arr.size:
            t.suggested_range = (int(arr.min()), int(arr.max()))
    suggested = [t.name for t in sig.inputs if t.suggested_range is not None]
    if suggested:
        sig.notes.append(f"the ranges of {', '.join(suggested)} were seen only in the samples: the spec has them "
                         "as comments; uncomment those that hold for every value the model accepts")


def spec_text(sig: Signature, name: str, spec_dir: Path, validation: str, samples_given: bool, is_text: bool = False) -> str:
    source = dict(sig.source)
    if "path" in source:
        source["path"] = _relative(Path(source["path"]), spec_dir)
    lines = [
        f"# Build spec for {name}, written by `tritonforge init` from the model itself. Read every field,",
        "# then: tritonforge build THIS_FILE",
        f"name: {name}",
        "source:",
        *[f"  {k}: {v}" for k, v in source.items()],
        "inputs:                             # per item, without the batch dim; -1 = dynamic",
        *[line for t in sig.inputs for line in _tensor_lines(t)],
        "outputs:",
        *[line for t in sig.outputs for line in _tensor_lines(t)],
        f"max_batch_size: {DEFAULT_MAX_BATCH}",
        "validation:                         # held out: verifies the export and gates every variant",
        f"  data: {{npz: {validation}}}" + ("" if samples_given else
                                           "   # supply it: one array per input name, batch first (never training data)"),
        "  tolerance: {atol: 1.0e-4, rtol: 1.0e-3}",
        "variants:                           # onnx_fp32 (the reference) is always built",
        "  - {kind: onnx_fp16}",
        "  - {kind: onnx_int8_dynamic, per_channel: true}",
        "  # - {kind: onnx_int8_qdq, calibration_method: minmax}   # needs a calibration section (other data than validation)",
        "  # - {kind: trt_fp16}                                      # on a GPU with TensorRT",
        "gate: {min_cosine: 0.99}            # every output's worst sample against FP32; for class scores see gate.outputs",
        "serving:",
        "  dynamic_batching: {max_queue_delay_us: 0}",
        "  instance_count: 1",
        "  cache: {kind: memory, ttl_s: 300}   # kind: redis to share answers between replicas",
    ]
    lines += [f"# note: {n}" for n in sig.notes]
    return "\n".join(lines) + "\n"


def _relative(path: Path, base: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), base.resolve())


def write_spec(model: str, out: Path, samples: Path | None = None, base: Path | None = None) -> tuple[Path, Signature]:
    """Write the spec for MODEL to `out` (never over an existing file); with samples, check them against it."""
    out = Path(out)
    if out.exists():
        raise SpecError(f"{out} exists; tritonforge init never overwrites a file (give another -o)")
    example: dict[str, np.ndarray] = {}
    if samples is not None:
        try:
            with np.load(samples, allow_pickle=False) as npz:
                example = {k: npz[k] for k in npz.files}
        except Exception as e:
            raise SpecError(f"--samples {samples}: not a readable .npz (no pickles): {e}") from None
    sig = read_signature(model, base or Path.cwd(), example)
    if example:
        missing = [t.name for t in sig.inputs if t.name not in example]
        if missing:
            raise SpecError(f"--samples {samples}: no array for input(s) {missing} (it has {sorted(example)})")
        suggest_ranges(sig, example)
    name = _spec_name(Path(model).stem if ":" not in model else model.split(":")[0])
    validation = _relative(samples, out.parent) if samples is not None else "validation.npz"
    text = spec_text(sig, name, out.parent, validation, samples is not None)
    from tritonforge.build.spec import parse_spec

    import yaml

    spec = parse_spec(yaml.safe_load(text), source=str(out), base_dir=out.parent)
    if example:
        from tritonforge.build.data import _check_batch

        _check_batch(example, spec, None, f"--samples {samples}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "x") as f:  # never over a file that appeared meanwhile
        f.write(text)
    return out, sig
