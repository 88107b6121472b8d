"""Source kind 'onnx': an existing ONNX file; its reference outputs come from ONNX Runtime on CPU, and its export
is the file itself, checked and shape-inferred (onnx_graph.finalize)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.builder.sources.base import LoadedSource, Source, options_of
from tritonforge.errors import SourceModelError, SpecError
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
    exports = False

    def check(self, spec: BuildSpec) -> None:
        """The spec's inputs and outputs exist in the file under their names, with its element types."""
        import onnx

        from tritonforge import dtypes

        path = spec.resolve(options_of(spec, OnnxOptions).path)
        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as e:
            raise SourceModelError(f"field 'source.path': {path} is not a readable ONNX file: {e}") from None
        initializers = {i.name for i in graph.initializer}
        declared = {
            "inputs": {v.name: v.type.tensor_type.elem_type for v in graph.input if v.name not in initializers},
            "outputs": {v.name: v.type.tensor_type.elem_type for v in graph.output},
        }
        where = f"{spec.spec_path}: " if spec.spec_path else ""
        for section, tensors in (("inputs", spec.inputs), ("outputs", spec.outputs)):
            found = declared[section]
            for i, t in enumerate(tensors):
                if t.name not in found:
                    raise SpecError(
                        f"{where}field '{section}[{i}].name': {path} has no {section[:-1]} '{t.name}' "
                        f"(its {section}: {', '.join(found) or 'none'})"
                    )
                elem = found[t.name]
                if elem == onnx.TensorProto.UNDEFINED or elem == dtypes.by_name(t.dtype).onnx:
                    continue
                theirs = dtypes.BY_ONNX.get(elem)
                onnx_name = onnx.TensorProto.DataType.Name(elem)
                fix = f"set dtype: {theirs.name}" if theirs else "tritonforge serves no tensor of that type"
                raise SpecError(
                    f"{where}field '{section}[{i}].dtype': the spec says {t.dtype}, but {path} declares "
                    f"{section[:-1]} '{t.name}' as {onnx_name}: {fix}"
                )

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
