"""Source-model loaders, one module per `source.kind`. Adding a kind = one module + one line in LOADERS."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from tritonforge.build.sources import exported_program, onnx_file, pytorch, torchscript
from tritonforge.build.sources.base import LoadedSource
from tritonforge.build.spec import BuildSpec

LOADERS: dict[str, ModuleType] = {
    "pytorch": pytorch,
    "torchscript": torchscript,
    "exported_program": exported_program,
    "onnx": onnx_file,
}


def load_source(spec: BuildSpec) -> LoadedSource:
    """Load the spec's source model, ready to run as the reference."""
    return LOADERS[spec.source.kind].load(spec)


def source_files(spec: BuildSpec) -> dict[str, Path]:
    """Files whose bytes define the source model (hashed into the build fingerprint)."""
    return LOADERS[spec.source.kind].files(spec)


__all__ = ["LOADERS", "LoadedSource", "load_source", "source_files"]
