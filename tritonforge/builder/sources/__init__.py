"""Source kinds, one module per `source.kind`, in one table: each owns its spec options (the fields it takes and
their rules), its loader, the files and tools that define it, and its exporter to the FP32 ONNX reference.

Adding a kind: write a module with a Source subclass (tritonforge.builder.sources.base) and add one line to _ALL.
The build spec's `source` is the union of every kind's Options, told apart by `kind`, so a field the kind does not
take is an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tritonforge.builder.sources.base import LoadedSource, Source
from tritonforge.builder.sources.exported_program import ExportedProgramSource
from tritonforge.builder.sources.onnx_file import OnnxSource
from tritonforge.builder.sources.pytorch import PytorchSource
from tritonforge.builder.sources.sklearn_estimator import SklearnSource
from tritonforge.builder.sources.torchscript import TorchScriptSource
from tritonforge.spec import BuildSpec
from tritonforge.spec.registry import SOURCE_KINDS

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset
    from tritonforge.builder.exporters import ExportResult

_ALL: list[Source] = [PytorchSource(), TorchScriptSource(), ExportedProgramSource(), OnnxSource(), SklearnSource()]
SOURCES: dict[str, Source] = {s.kind: s for s in _ALL}  # kind -> source

for _source in _ALL:
    SOURCE_KINDS.register(_source.Options)


def source_of(spec: BuildSpec) -> Source:
    """The Source the spec's `source.kind` names."""
    return SOURCES[spec.source.kind]


def require_source(spec: BuildSpec) -> None:
    """Raise MissingExtraError naming the extra when the spec's source kind needs a package not installed."""
    source_of(spec).require()


def check_source(spec: BuildSpec) -> None:
    """Raise SpecError naming the file, the tensor and the field when the spec disagrees with the source's own
    declared signature (an ONNX file's input and output types), before anything is loaded or exported."""
    source_of(spec).check(spec)


def load_source(spec: BuildSpec) -> LoadedSource:
    """Load the spec's source model, ready to run as the reference."""
    return source_of(spec).load(spec)


def source_files(spec: BuildSpec) -> dict[str, Path]:
    """Files whose bytes define the source model (hashed into the build fingerprint)."""
    return source_of(spec).files(spec)


def source_tools(spec: BuildSpec) -> dict[str, str]:
    """Versions of the packages a kind loads and exports with, beyond tritonforge's own (hashed into the build
    fingerprint)."""
    return source_of(spec).tools()


def export_source(source: LoadedSource, spec: BuildSpec, validation: Dataset, out_path: Path) -> ExportResult:
    """The loaded source model as the FP32 ONNX reference at `out_path`, by its kind's exporter."""
    return source_of(spec).export(source, spec, validation, out_path)


__all__ = [
    "SOURCES",
    "LoadedSource",
    "Source",
    "check_source",
    "export_source",
    "load_source",
    "require_source",
    "source_files",
    "source_of",
    "source_tools",
]
