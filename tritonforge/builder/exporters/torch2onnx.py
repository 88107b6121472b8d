"""PyTorch (nn.Module, TorchScript, ExportedProgram) -> ONNX with a dynamic batch axis.

The dynamo exporter is tried first; a model it cannot trace falls back to the TorchScript exporter, and the
result records which one produced the file. Run alone to reproduce a failing export:

    python -m tritonforge.builder.exporters.torch2onnx SPEC.yaml OUT.onnx
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx

from tritonforge.builder.exporters import ExportResult
from tritonforge.builder.onnx_graph import check_against_spec, finalize, name_dims, rename_io
from tritonforge.builder.sources.base import LoadedSource
from tritonforge.errors import ExportError
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec


def _example_args(spec: BuildSpec, example: Batch) -> tuple:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(example[t.name])) for t in spec.inputs)


def _export_dynamo(obj, spec: BuildSpec, args: tuple, path: Path) -> None:
    import torch

    auto = torch.export.Dim.AUTO
    dynamic = tuple({0: auto} | {i + 1: auto for i, d in enumerate(t.shape) if d == -1} for t in spec.inputs)
    torch.onnx.export(
        obj,
        args,
        str(path),
        dynamo=True,
        external_data=False,
        dynamic_shapes=dynamic,
        opset_version=spec.export.opset,
        optimize=True,
        verbose=False,
    )


def _export_torchscript(obj, spec: BuildSpec, args: tuple, path: Path) -> None:
    import torch

    in_names = [f"in_{i}" for i in range(len(spec.inputs))]
    out_names = [f"out_{i}" for i in range(len(spec.outputs))]
    axes = {
        n: {0: "batch"} | {i + 1: f"{n}_d{i + 1}" for i, d in enumerate(t.shape) if d == -1}
        for n, t in zip(in_names, spec.inputs, strict=True)
    }
    axes |= {
        n: {0: "batch"} | {i + 1: f"{n}_d{i + 1}" for i, d in enumerate(t.shape) if d == -1}
        for n, t in zip(out_names, spec.outputs, strict=True)
    }
    torch.onnx.export(
        obj,
        args,
        str(path),
        dynamo=False,
        input_names=in_names,
        output_names=out_names,
        dynamic_axes=axes,
        opset_version=min(spec.export.opset, 20),
        do_constant_folding=True,
    )


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, warnings and log lines (failures are still raised)."""
    log = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export(source: LoadedSource, spec: BuildSpec, example: Batch, out_path: Path) -> ExportResult:
    """Export `source` to `out_path` with the spec's I/O names, dynamic batch, checked and shape-inferred.

    `example` is a batch of at least 2 samples (so the batch dim is not specialised to 1).
    """
    import torch

    if source.kind == "onnx":
        raise ExportError("an ONNX source needs no export")
    n = len(next(iter(example.values())))
    if n < 2:
        raise ExportError("export needs an example batch of at least 2 samples so the batch dim stays dynamic")
    args = _example_args(spec, example)
    obj = source.obj
    attempts = ["torchscript"] if isinstance(obj, torch.jit.ScriptModule) else ["dynamo", "torchscript"]
    notes: list[str] = []
    tmp = out_path.with_suffix(".raw.onnx")
    for exporter in attempts:
        try:
            with _quiet():
                if exporter == "dynamo":
                    _export_dynamo(obj, spec, args, tmp)
                else:
                    _export_torchscript(obj, spec, args, tmp)
            model = onnx.load(str(tmp))
            rename_io(model, [t.name for t in spec.inputs], [t.name for t in spec.outputs])
            check_against_spec(model, spec)
            name_dims(model, spec)
            finalize(model, spec, out_path)
            return ExportResult(out_path, exporter, notes)
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            notes.append(f"{exporter} exporter failed: {type(e).__name__}: {reason[:500]}")
        finally:
            tmp.unlink(missing_ok=True)
    raise ExportError("export to ONNX failed:\n  " + "\n  ".join(notes))


def main(argv: list[str] | None = None) -> int:
    """Export the model of one spec to one ONNX file, alone, for reproducing a failing export."""
    from tritonforge.builder.data import load_dataset
    from tritonforge.builder.sources import load_source
    from tritonforge.spec import load_spec

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__)
        return 2
    spec = load_spec(argv[0])
    data = load_dataset(spec, spec.validation.data, "validation.data").rebatch(2)
    result = export(load_source(spec), spec, data.batches[0], Path(argv[1]))
    print(f"wrote {result.path} with the {result.exporter} exporter")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
