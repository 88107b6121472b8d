"""Source-model loaders, one module per `source.kind`. Adding a kind = one module + one line in LOADERS."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from tritonforge.builder.sources import exported_program, onnx_file, pytorch, sklearn_estimator, torchscript
from tritonforge.builder.sources.base import LoadedSource
from tritonforge.spec import BuildSpec

LOADERS: dict[str, ModuleType] = {
    "pytorch": pytorch,
    "torchscript": torchscript,
    "exported_program": exported_program,
    "onnx": onnx_file,
    "sklearn": sklearn_estimator,
}


def load_source(spec: BuildSpec) -> LoadedSource:
    """Load the spec's source model, ready to run as the reference."""
    return LOADERS[spec.source.kind].load(spec)


def source_files(spec: BuildSpec) -> dict[str, Path]:
    """Files whose bytes define the source model (hashed into the build fingerprint)."""
    return LOADERS[spec.source.kind].files(spec)


def source_tools(spec: BuildSpec) -> dict[str, str]:
    """Versions of the packages a kind loads and exports with, beyond tritonforge's own (hashed into the
    build fingerprint): a loader module may define `tools()`."""
    tools = getattr(LOADERS[spec.source.kind], "tools", None)
    return tools() if tools is not None else {}


__all__ = ["LOADERS", "LoadedSource", "load_source", "source_files", "source_tools"]
