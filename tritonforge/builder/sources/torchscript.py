"""Source kind 'torchscript': a file saved with torch.jit.save."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tritonforge.builder.sources.base import LoadedSource, TorchSource, options_of, torch_runner
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec
from tritonforge.spec.base import SourceBase


class TorchScriptOptions(SourceBase):
    kind: Literal["torchscript"] = "torchscript"
    path: Path = Field(description="a TorchScript file (torch.jit.save; trusted code: loading runs it)")


class TorchScriptSource(TorchSource):
    Options = TorchScriptOptions

    def load(self, spec: BuildSpec) -> LoadedSource:
        import torch

        path = spec.resolve(options_of(spec, TorchScriptOptions).path)
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise SourceModelError(f"field 'source.path': {path} is not a loadable TorchScript file: {e}") from None
        module.eval()
        return LoadedSource("torchscript", module, torch_runner(spec, module))
