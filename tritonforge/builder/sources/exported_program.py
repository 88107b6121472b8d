"""Source kind 'exported_program': a `.pt2` file saved with torch.export.save."""

from __future__ import annotations

from pathlib import Path

from tritonforge.builder.sources.base import LoadedSource, torch_runner
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec


def files(spec: BuildSpec) -> dict[str, Path]:
    return {"source.path": spec.resolve(spec.source.path)}  # type: ignore[arg-type]


def load(spec: BuildSpec) -> LoadedSource:
    import torch

    path = spec.resolve(spec.source.path)  # type: ignore[arg-type]
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise SourceModelError(f"field 'source.path': {path} is not a loadable ExportedProgram (.pt2): {e}") from None
    return LoadedSource("exported_program", program, torch_runner(spec, program.module()))
