"""Source kind 'exported_program': a `.pt2` file saved with torch.export.save."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tritonforge.builder.sources.base import LoadedSource, Source, export_torch, options_of, torch_runner
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec
from tritonforge.spec.base import SourceBase

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset
    from tritonforge.builder.exporters import ExportResult


class ExportedProgramOptions(SourceBase):
    kind: Literal["exported_program"] = "exported_program"
    path: Path = Field(description="a .pt2 file saved with torch.export.save")


class ExportedProgramSource(Source):
    Options = ExportedProgramOptions

    def files(self, spec: BuildSpec) -> dict[str, Path]:
        return {"source.path": spec.resolve(options_of(spec, ExportedProgramOptions).path)}

    def load(self, spec: BuildSpec) -> LoadedSource:
        import torch

        path = spec.resolve(options_of(spec, ExportedProgramOptions).path)
        try:
            program = torch.export.load(str(path))
        except Exception as e:
            raise SourceModelError(f"field 'source.path': {path} is not a loadable ExportedProgram (.pt2): {e}") from None
        return LoadedSource("exported_program", program, torch_runner(spec, program.module()))

    def export(self, source: LoadedSource, spec: BuildSpec, validation: Dataset, out_path: Path) -> ExportResult:
        return export_torch(source, spec, validation, out_path)
