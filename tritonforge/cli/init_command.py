"""`tritonforge init`: a commented build spec from the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonforge.cli.render import console


def init(
    model: Annotated[str, typer.Argument(help="an ONNX file, a .pt2, a TorchScript file, or module:callable")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the spec to write (never over an existing file)")] = Path(
        "spec.yaml"
    ),
    samples: Annotated[
        Path | None,
        typer.Option(
            help="held-out inputs (.npz, one array per input, batch first): "
            "the validation data, checked against the model; a "
            "TorchScript file or a factory needs them for its signature; "
            "batches of several lengths as keys PREFIX/NAME "
            "(b0/input_ids, b1/input_ids, ...)"
        ),
    ] = None,
    output_names: Annotated[
        str | None,
        typer.Option(
            "--output-names",
            help="the outputs' names, in order, comma-separated "
            "(default: the model's own: a dict's keys, a namedtuple's "
            "fields; 'output' for a bare tensor)",
        ),
    ] = None,
) -> None:
    """Write a build spec read from MODEL: inputs and outputs with names, dtypes and shapes (dynamic dims -1, the
    batch axis detected), value ranges where the graph shows them, the default variants, gate and serving
    settings, and a validation section (your --samples, or an .npz for you to supply)."""
    from tritonforge.builder.scaffold import write_spec

    names = [n.strip() for n in output_names.split(",")] if output_names is not None else None
    path, sig = write_spec(model, output, samples, output_names=names)
    console.print(
        f"wrote {path}: {len(sig.inputs)} input(s) ({', '.join(t.name for t in sig.inputs)}), "
        f"{len(sig.outputs)} output(s) ({', '.join(t.name for t in sig.outputs)})",
        markup=False,
    )
    if samples is None:
        console.print(f"next: put held-out inputs in the validation .npz it names, then `tritonforge build {path}`", markup=False)
    for note in sig.notes:
        console.print(f"note: {note}", markup=False)
