"""Source kind 'torchscript': a file saved with torch.jit.save."""

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
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise SourceModelError(f"field 'source.path': {path} is not a loadable TorchScript file: {e}") from None
    module.eval()
    return LoadedSource("torchscript", module, torch_runner(spec, module))
