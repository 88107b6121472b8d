"""Source kind 'sklearn': a fitted scikit-learn estimator (or Pipeline) from a joblib/pickle file or a factory.

TRUSTED CODE: `path` is read with joblib.load (pickle underneath), and unpickling runs whatever code the file
holds, as torch.jit.load does for TorchScript; `factory` ('module:callable' returning a fitted estimator) is
imported and called. Build only files and modules you would run yourself.

The reference run is the estimator's own prediction, outputs named after the spec's outputs in order:
a classifier gives [label (predict, one per sample), probabilities (predict_proba, [n_classes])], a regressor
[variable (predict, reshaped to [1] per sample)]. scikit-learn is imported only when this kind is used
(`pip install 'tritonforge[sklearn]'`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from tritonforge import dtypes
from tritonforge.builder.sources.base import LoadedSource, Run, Source, factory_file, options_of
from tritonforge.errors import SourceModelError
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec, TensorSpec
from tritonforge.spec.base import SourceBase
from tritonforge.spec.refs import CALLABLE_REF, import_callable

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset
    from tritonforge.builder.exporters import ExportResult

EXTRA = "pip install 'tritonforge[sklearn]'"


class SklearnOptions(SourceBase):
    kind: Literal["sklearn"] = "sklearn"
    path: Path | None = Field(
        None, description="a joblib or pickle file of a fitted estimator (trusted code: unpickling runs it)"
    )
    factory: str | None = Field(None, description="'module:callable' returning a fitted estimator (instead of 'path')")
    factory_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory")

    @model_validator(mode="after")
    def _path_or_factory(self) -> SklearnOptions:
        if (self.path is None) == (self.factory is None):
            raise ValueError("kind 'sklearn' takes exactly one of 'path' (a joblib/pickle file) or 'factory: module:callable'")
        if self.factory is not None and not CALLABLE_REF.match(self.factory):
            raise ValueError(f"factory {self.factory!r} must be 'module:callable'")
        if self.factory_args and self.factory is None:
            raise ValueError("kind 'sklearn' takes 'factory_args' only with 'factory'")
        return self


def source_field(spec: BuildSpec) -> str:
    """The spec field the estimator comes from, for error messages."""
    return "source.path" if options_of(spec, SklearnOptions).path is not None else "source.factory"


def one_line(e: BaseException) -> str:
    """An exception as `Type: first line of its message`."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:500]}" if text else type(e).__name__


def is_classifier(est: Any) -> bool:
    """Whether a (checked) estimator is a classifier; a Pipeline counts as its last step."""
    from sklearn.base import is_classifier as _is_classifier

    try:
        return bool(_is_classifier(est))
    except Exception:
        return False


class SklearnSource(Source):
    Options = SklearnOptions
    needs: ClassVar[dict[str, str]] = {"sklearn": "sklearn", "skl2onnx": "sklearn"}

    def tools(self) -> dict[str, str]:
        """Versions of the packages that load and export the estimator (part of the build fingerprint)."""
        from importlib import metadata

        out = {}
        for dist in ("scikit-learn", "skl2onnx", "joblib"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                out[dist] = metadata.version(dist)
        return out

    def files(self, spec: BuildSpec) -> dict[str, Path]:
        opts = options_of(spec, SklearnOptions)
        return super().files(spec) if opts.path is not None else factory_file(spec, opts.factory or "")

    def load(self, spec: BuildSpec) -> LoadedSource:
        opts = options_of(spec, SklearnOptions)
        field = source_field(spec)
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise SourceModelError(f"field '{field}': kind 'sklearn' needs scikit-learn: {EXTRA}") from None
        if opts.path is not None:
            est, origin = _from_file(spec.resolve(opts.path)), str(spec.resolve(opts.path))
        else:
            est, origin = _from_factory(spec, opts), f"{opts.factory}()"
        check_estimator(est, field, origin)
        _check_signature(spec, est, field)
        return LoadedSource("sklearn", est, runner(spec, est))

    def export(self, source: LoadedSource, spec: BuildSpec, validation: Dataset, out_path: Path) -> ExportResult:
        from tritonforge.builder.exporters import sklearn2onnx

        return sklearn2onnx.export(source, spec, out_path)


def _from_file(path: Path) -> Any:
    if not path.is_file():
        raise SourceModelError(f"field 'source.path': file not found: {path}")
    try:
        import joblib
    except ImportError:  # a plain pickle file still loads
        import pickle

        def load_file(p: Path) -> Any:
            with open(p, "rb") as f:
                return pickle.load(f)
    else:
        load_file = joblib.load
    try:
        return load_file(path)
    except Exception as e:
        raise SourceModelError(f"field 'source.path': {path} is not a loadable joblib/pickle file: {one_line(e)}") from None


def _from_factory(spec: BuildSpec, opts: SklearnOptions) -> Any:
    factory = import_callable(opts.factory or "", spec.base_dir, "source.factory")
    try:
        return factory(**opts.factory_args)
    except Exception as e:
        raise SourceModelError(f"field 'source.factory': {opts.factory} raised {one_line(e)}") from None


def check_estimator(est: Any, field: str, origin: str) -> None:
    """A fitted scikit-learn classifier or regressor (a Pipeline ending in one counts), else SourceModelError."""
    from sklearn.base import BaseEstimator, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    what = type(est).__name__
    if not isinstance(est, BaseEstimator) or not hasattr(est, "predict"):
        raise SourceModelError(f"field '{field}': {origin} gave a {what}, not a scikit-learn estimator with predict()")
    try:
        regressor = bool(is_regressor(est))
    except Exception:
        regressor = False
    if not (is_classifier(est) or regressor):
        raise SourceModelError(f"field '{field}': {origin} gave a {what}, neither a classifier nor a regressor")
    try:
        check_is_fitted(est)
    except NotFittedError:
        raise SourceModelError(f"field '{field}': {origin} gave a {what} that is not fitted (call fit first)") from None
    except Exception as e:
        raise SourceModelError(f"field '{field}': cannot tell whether the {what} is fitted: {one_line(e)}") from None
    if is_classifier(est) and not hasattr(est, "predict_proba"):
        raise SourceModelError(
            f"field '{field}': the {what} classifier has no predict_proba() (for SVC: "
            "probability=True); the probabilities output needs it"
        )


def _check_signature(spec: BuildSpec, est: Any, field: str) -> None:
    """One input of features per sample; as many outputs as the estimator gives."""
    if len(spec.inputs) != 1 or len(spec.inputs[0].shape) != 1:
        raise SourceModelError(
            f"field 'inputs': a scikit-learn estimator takes one input of shape [n_features]; "
            f"the spec gives {[(t.name, t.shape) for t in spec.inputs]}"
        )
    if spec.inputs[0].dtype == "string":
        raise SourceModelError("field 'inputs[0].dtype': string features are not supported for kind 'sklearn'")
    n = getattr(est, "n_features_in_", None)
    width = spec.inputs[0].shape[0]
    if n is not None and width != -1 and width != n:
        raise SourceModelError(f"field 'inputs[0].shape': [{width}], but the estimator was fitted on {n} features")
    names = [t.name for t in spec.outputs]
    want = ["label", "probabilities"] if is_classifier(est) else ["variable"]
    if len(names) != len(want):
        kind = "classifier" if is_classifier(est) else "regressor"
        raise SourceModelError(
            f"field 'outputs': a scikit-learn {kind} gives {len(want)} output(s) {want}; the "
            f"spec names {len(names)}: {names} (from {field})"
        )


def _as_spec_dtype(arr: Any, tensor: TensorSpec) -> np.ndarray:
    arr = np.asarray(arr)
    want = dtypes.by_name(tensor.dtype).numpy
    if want.kind == "O":
        return arr.astype(object)
    if arr.dtype.kind in "biuf" and want.kind in "biuf":
        return arr.astype(want, copy=False)
    return arr


def runner(spec: BuildSpec, est: Any) -> Run:
    """The estimator's own predict (and predict_proba for classifiers) on a numpy batch, keyed by spec outputs."""
    name = spec.inputs[0].name
    classifier = is_classifier(est)

    def run(batch: Batch) -> Batch:
        x = np.ascontiguousarray(batch[name])
        try:
            out = [est.predict(x), est.predict_proba(x)] if classifier else [np.asarray(est.predict(x)).reshape(len(x), -1)]
        except Exception as e:
            raise SourceModelError(f"source model raised {one_line(e)} on a validation batch") from None
        return {t.name: _as_spec_dtype(v, t) for t, v in zip(spec.outputs, out, strict=True)}

    return run
