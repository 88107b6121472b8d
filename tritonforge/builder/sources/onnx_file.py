"""Source kind 'onnx': an existing ONNX file; its reference outputs come from ONNX Runtime on CPU, and its export
is the file itself, checked and shape-inferred (onnx_graph.finalize)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.builder.sources.base import LoadedSource, Source, options_of
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec
from tritonforge.spec.base import SourceBase

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset
    from tritonforge.builder.exporters import ExportResult


class OnnxOptions(SourceBase):
    kind: Literal["onnx"] = "onnx"
    path: Path = Field(description="an ONNX file")


class OnnxSource(Source):
    Options = OnnxOptions

    def load(self, spec: BuildSpec) -> LoadedSource:
        path = spec.resolve(options_of(spec, OnnxOptions).path)
        try:
            model = OrtModel(path, [t.name for t in spec.outputs])
        except Exception as e:
            raise SourceModelError(f"field 'source.path': ONNX Runtime cannot load {path}: {e}") from None
        return LoadedSource("onnx", path, model.run)

    def export(self, source: LoadedSource, spec: BuildSpec, validation: Dataset, out_path: Path) -> ExportResult:
        """No export: the file, checked and shape-inferred, with the spec's IR version."""
        from tritonforge.builder.exporters import ExportResult
        from tritonforge.builder.onnx_graph import finalize, load_checked

        finalize(load_checked(spec.resolve(options_of(spec, OnnxOptions).path)), spec, out_path)
        return ExportResult(out_path, "none (ONNX source)", [])
