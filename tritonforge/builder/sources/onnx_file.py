"""Source kind 'onnx': an existing ONNX file; its reference outputs come from ONNX Runtime on CPU."""

from __future__ import annotations

from pathlib import Path

from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.builder.sources.base import LoadedSource
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec


def files(spec: BuildSpec) -> dict[str, Path]:
    return {"source.path": spec.resolve(spec.source.path)}  # type: ignore[arg-type]


def load(spec: BuildSpec) -> LoadedSource:
    path = spec.resolve(spec.source.path)  # type: ignore[arg-type]
    try:
        model = OrtModel(path, [t.name for t in spec.outputs])
    except Exception as e:
        raise SourceModelError(f"field 'source.path': ONNX Runtime cannot load {path}: {e}") from None
    return LoadedSource("onnx", path, model.run)
