"""scikit-learn estimator -> ONNX with skl2onnx, a dynamic batch axis and the spec's tensor names.

Classifiers are converted without ZipMap, so they give [label, probabilities] as tensors (as predict and
predict_proba do); regressors give [variable]. The graph uses ai.onnx at `export.opset` and ai.onnx.ml at most
opset 3 (what ONNX Runtime 1.19, in Triton 24.10, runs); its outputs are renamed to the spec's, in order.
Run alone to reproduce a failing export:

    python -m tritonforge.builder.exporters.sklearn2onnx SPEC.yaml OUT.onnx
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import onnx

from tritonforge.builder.exporters import ExportResult
from tritonforge.builder.onnx_graph import finalize, name_dims, rename_io
from tritonforge.builder.sources.base import LoadedSource
from tritonforge.builder.sources.sklearn_estimator import EXTRA, is_classifier, one_line, source_field
from tritonforge.errors import ExportError
from tritonforge.spec import BuildSpec

ML_OPSET = 3  # ai.onnx.ml: TreeEnsemble* v3; ONNX Runtime 1.19 does not run v5


def _initial_types(spec: BuildSpec) -> list[tuple[str, object]]:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType

    types = {"float32": FloatTensorType, "float64": DoubleTensorType, "int64": Int64TensorType}
    t = spec.inputs[0]
    if t.dtype not in types:
        raise ExportError(f"field 'inputs[0].dtype': skl2onnx takes {sorted(types)} features, not {t.dtype}")
    return [(t.name, types[t.dtype]([None, *[None if d == -1 else d for d in t.shape]]))]


def convert(est: object, spec: BuildSpec) -> onnx.ModelProto:
    """The raw skl2onnx graph of `est` (no ZipMap), before renaming and checks."""
    field = source_field(spec)
    try:
        from skl2onnx import convert_sklearn
    except ImportError:
        raise ExportError(f"field '{field}': exporting a scikit-learn model needs skl2onnx: {EXTRA}") from None
    initial = _initial_types(spec)
    options = {id(est): {"zipmap": False}} if is_classifier(est) else None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return convert_sklearn(
                est, initial_types=initial, options=options, target_opset={"": spec.export.opset, "ai.onnx.ml": ML_OPSET}
            )
    except Exception as e:
        raise ExportError(f"field '{field}': skl2onnx cannot convert the {type(est).__name__}: {one_line(e)}") from None


def export(source: LoadedSource, spec: BuildSpec, out_path: Path) -> ExportResult:
    """Convert the estimator in `source` to `out_path`: the spec's I/O names, dynamic batch, checked and
    shape-inferred (onnx_graph.finalize, as an ONNX source is)."""
    if source.kind != "sklearn":
        raise ExportError(f"the skl2onnx exporter takes a scikit-learn source, not '{source.kind}'")
    model = convert(source.obj, spec)
    got = [o.name for o in model.graph.output]
    want = [t.name for t in spec.outputs]
    if len(got) != len(want):
        raise ExportError(f"field 'outputs': skl2onnx gives {len(got)} output(s) {got}; the spec names {len(want)}: {want}")
    notes = []
    if got != want:
        notes.append(f"skl2onnx's outputs {got} renamed to the spec's {want}, in order")
    rename_io(model, [t.name for t in spec.inputs], want)
    name_dims(model, spec)
    finalize(model, spec, out_path)
    return ExportResult(out_path, "skl2onnx", notes)


def main(argv: list[str] | None = None) -> int:
    """Export the estimator of one spec to one ONNX file, alone, for reproducing a failing export."""
    from tritonforge.builder.sources import load_source
    from tritonforge.spec import load_spec

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__)
        return 2
    spec = load_spec(argv[0])
    result = export(load_source(spec), spec, Path(argv[1]))
    print(f"wrote {result.path} with {result.exporter}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
