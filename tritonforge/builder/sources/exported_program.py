"""Source kind 'exported_program': a `.pt2` file saved with torch.export.save."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tritonforge.builder.sources.base import LoadedSource, TorchSource, options_of, torch_runner
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec
from tritonforge.spec.base import SourceBase


class ExportedProgramOptions(SourceBase):
    kind: Literal["exported_program"] = "exported_program"
    path: Path = Field(description="a .pt2 file saved with torch.export.save")


class ExportedProgramSource(TorchSource):
    Options = ExportedProgramOptions

    def load(self, spec: BuildSpec) -> LoadedSource:
        import torch

        path = spec.resolve(options_of(spec, ExportedProgramOptions).path)
        try:
            program = torch.export.load(str(path))
        except Exception as e:
            raise SourceModelError(f"field 'source.path': {path} is not a loadable ExportedProgram (.pt2): {e}") from None
        return LoadedSource("exported_program", program, torch_runner(spec, program.module()))
