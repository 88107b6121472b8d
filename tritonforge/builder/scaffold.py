"""`tritonforge init`: a commented build spec read from the model itself.

The signature (names, dtypes, shapes with -1 for dynamic dims and their names, the batch axis) comes from an ONNX
file's graph or a `.pt2`'s ExportedProgram; a TorchScript file or a `module:callable` factory carries none, so
`scaffold_torch` reads it from running the model on the samples and from its ONNX export. An integer input that
indexes an embedding table gets the table's rows as its range. A range seen only in the samples' min/max is
written as a comment to uncomment, never as an active range: the samples need not hold every valid value.
Loading a TorchScript file, a `.pt2` or a factory runs the model's code: give only models you trust.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritonforge import dtypes
from tritonforge.errors import SpecError
from tritonforge.extras import require
from tritonforge.serving.batching import Batch

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
        raise SpecError(
            f"{where}: tensor '{name}' has a fixed first dimension ({dims[0]}), so no batch axis; "
            "export it with a dynamic batch dimension (dynamic_axes / dynamic_shapes on axis 0)"
        )
    shape = [d if isinstance(d, int) and d > 0 else -1 for d in dims[1:]]
    names = [d for d in dims[1:] if isinstance(d, str) and d != "?" and not re.fullmatch(r"s\d+|unk__\d+", d)]
    return shape, names


def _embedding_ranges(model) -> dict[str, tuple[tuple[float, float], str]]:
    """Graph inputs used as the indices of a Gather over an initializer: [0, rows - 1]."""
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    out: dict[str, tuple[tuple[float, float], str]] = {}
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


def read_signature(model: str, base: Path, batches: list[Batch], output_names: list[str] | None = None) -> Signature:
    """The signature of MODEL: a path (.onnx, .pt2, TorchScript) or 'module:callable'; `output_names` (not for
    an ONNX file, whose graph names its outputs) replace the outputs' names in order."""
    from tritonforge.spec import CALLABLE_REF

    if CALLABLE_REF.match(model) and not (base / model).exists():
        require("torch", "torch", f"MODEL {model} (a PyTorch factory)")
        from tritonforge.builder.scaffold_torch import from_module
        from tritonforge.spec.refs import import_callable

        factory = import_callable(model, base, "MODEL")
        try:
            module = factory().eval()
        except Exception as e:
            raise SpecError(f"MODEL: {model} raised {type(e).__name__}: {e}") from None
        return from_module(module, {"kind": "pytorch", "factory": model}, batches, model, output_names)
    path = Path(model)
    if not path.is_file():
        raise SpecError(f"MODEL: {model} is neither a file nor 'module:callable'")
    if path.suffix == ".onnx":
        if output_names is not None:
            raise SpecError("--output-names: an ONNX file's outputs keep the names its graph gives them")
        return from_onnx(path)
    require("torch", "torch", f"MODEL {path} (an ExportedProgram or TorchScript file)")
    from tritonforge.builder import scaffold_torch

    if path.suffix == ".pt2":
        sig = scaffold_torch.from_exported_program(path)
        if output_names is not None:
            if len(output_names) != len(sig.outputs):
                raise SpecError(f"--output-names gives {len(output_names)} name(s) for the model's {len(sig.outputs)} output(s)")
            for t, name in zip(sig.outputs, output_names, strict=True):
                t.name = name
        return sig
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()  # TorchScript is trusted code
    except Exception as e:
        raise SpecError(f"{path}: not an ONNX file (.onnx), an ExportedProgram (.pt2) or a TorchScript file: {e}") from None
    return scaffold_torch.from_module(module, {"kind": "torchscript", "path": str(path)}, batches, str(path), output_names)


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
    return [
        f"  - {first}",
        *[f"    {line}" for line in rest],
        f"    # range: {_value(_numbers(t.suggested_range))}   # seen in the samples; uncomment to refuse values "
        "outside it (widen it to every value the model accepts)",
    ]


def suggest_ranges(sig: Signature, batches: list[Batch]) -> None:
    """For integer inputs the model gives no range: the samples' min/max, as a suggestion (a comment) only."""
    for t in sig.inputs:
        arrays = [np.asarray(b[t.name]) for b in batches if t.name in b]
        if t.range is None and arrays and all(a.dtype.kind in "iu" and a.size for a in arrays):
            t.suggested_range = (min(int(a.min()) for a in arrays), max(int(a.max()) for a in arrays))
    suggested = [t.name for t in sig.inputs if t.suggested_range is not None]
    if suggested:
        sig.notes.append(
            f"the ranges of {', '.join(suggested)} were seen only in the samples: the spec has them "
            "as comments; uncomment those that hold for every value the model accepts"
        )


def spec_text(sig: Signature, name: str, spec_dir: Path, validation: str, samples_given: bool) -> str:
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
        f"  data: {{npz: {validation}}}"
        + ("" if samples_given else "   # supply it: one array per input name, batch first (never training data)"),
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
        "  cache: {kind: none}               # off, as Triton's own cache is by default: a hit saves only what the model",
        "                                    # costs (measure with `tritonforge perf`); memory: per instance, ttl_s;",
        "                                    # redis: shared by replicas; triton: Triton's own (fixed input shapes only)",
    ]
    lines += [f"# note: {n}" for n in sig.notes]
    return "\n".join(lines) + "\n"


def _relative(path: Path, base: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), base.resolve())


def load_samples(samples: Path) -> list[Batch]:
    """The batches of a samples .npz as the data loader reads it: one array per input name, batch first, or keys
    PREFIX/NAME for batches of their own lengths (b0/input_ids, b0/attention_mask, b1/input_ids, ...); in each
    batch the names keep the order they first appear in the file."""
    from tritonforge.builder.data import _npz_batches

    try:
        with np.load(samples, allow_pickle=False) as npz:
            raw = {k: npz[k] for k in npz.files}
    except Exception as e:
        raise SpecError(f"--samples {samples}: not a readable .npz (no pickles): {e}") from None
    if not raw:
        raise SpecError(f"--samples {samples}: holds no arrays")
    order = list(dict.fromkeys(k.partition("/")[2] for k in raw)) if all("/" in k for k in raw) else list(raw)
    grouped = _npz_batches(raw)
    batches = [{n: b[n] for n in order if n in b} for _, b in grouped]
    for (prefix, _), b in zip(grouped, batches, strict=True):
        if list(b) != list(batches[0]):
            raise SpecError(f"--samples {samples}: batch '{prefix}' has arrays {sorted(b)}, the first batch {sorted(batches[0])}")
    return batches


def write_spec(
    model: str, out: Path, samples: Path | None = None, base: Path | None = None, output_names: list[str] | None = None
) -> tuple[Path, Signature]:
    """Write the spec for MODEL to `out` (never over an existing file); with samples, check them against it."""
    out = Path(out)
    if out.exists():
        raise SpecError(f"{out} exists; tritonforge init never overwrites a file (give another -o)")
    batches = load_samples(samples) if samples is not None else []
    sig = read_signature(model, base or Path.cwd(), batches, output_names)
    if batches:
        missing = [t.name for t in sig.inputs if t.name not in batches[0]]
        if missing:
            raise SpecError(f"--samples {samples}: no array for input(s) {missing} (it has {sorted(batches[0])})")
        suggest_ranges(sig, batches)
    name = _spec_name(Path(model).stem if ":" not in model else model.split(":")[0])
    validation = _relative(samples, out.parent) if samples is not None else "validation.npz"
    text = spec_text(sig, name, out.parent, validation, samples is not None)
    import yaml

    from tritonforge.spec import parse_spec

    spec = parse_spec(yaml.safe_load(text), source=str(out), base_dir=out.parent)
    from tritonforge.builder.data import _check_batch

    for i, batch in enumerate(batches):
        _check_batch(batch, spec, None, f"--samples {samples}" + (f" batch {i}" if len(batches) > 1 else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "x") as f:  # never over a file that appeared meanwhile
        f.write(text)
    return out, sig
