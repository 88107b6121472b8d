"""Source kind 'sklearn': the spec takes a joblib/pickle file or a factory (never both, never a state_dict), the
reference run is the estimator's own predict/predict_proba, skl2onnx's graph reproduces it under the spec's
names, and every failure is one clear line naming the field, exit code 2 through the CLI."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris, make_regression
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tritonforge.builder.exporters import sklearn2onnx
from tritonforge.builder.sources import LoadedSource, load_source, source_files, source_tools
from tritonforge.cli.main import main
from tritonforge.errors import ExportError, SourceModelError, SpecError
from tritonforge.spec import parse_spec

X, Y = load_iris(return_X_y=True)
X = X.astype(np.float32)
XR, YR = make_regression(n_samples=120, n_features=5, noise=0.1, random_state=0)
XR = XR.astype(np.float32)


def _classifier_spec(source: dict, base_dir: Path, names=("label", "probabilities")) -> dict:
    return {
        "name": "iris",
        "source": source,
        "inputs": [{"name": "input", "dtype": "float32", "shape": [4]}],
        "outputs": [{"name": names[0], "dtype": "int64", "shape": []}, {"name": names[1], "dtype": "float32", "shape": [3]}],
        "max_batch_size": 16,
        "validation": {"data": {"npz": "validation.npz"}},
    }


def _regressor_spec(source: dict) -> dict:
    return {
        "name": "reg",
        "source": source,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [5]}],
        "outputs": [{"name": "variable", "dtype": "float32", "shape": [1]}],
        "max_batch_size": 16,
        "validation": {"data": {"npz": "validation.npz"}},
    }


def _spec(data: dict, base_dir: Path):
    return parse_spec(data, source="spec.yaml", base_dir=base_dir)


@pytest.fixture(scope="module")
def gbm() -> GradientBoostingClassifier:
    return GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0).fit(X, Y)


@pytest.fixture(scope="module")
def regressor() -> GradientBoostingRegressor:
    return GradientBoostingRegressor(n_estimators=15, max_depth=2, random_state=0).fit(XR, YR)


@pytest.fixture
def gbm_file(tmp_path, gbm) -> Path:
    joblib.dump(gbm, tmp_path / "model.joblib")
    return tmp_path / "model.joblib"


# --- the spec ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", [{"kind": "sklearn", "path": "model.joblib"}, {"kind": "sklearn", "factory": "mod:make", "factory_args": {"n": 3}}]
)
def test_spec_takes_a_path_or_a_factory(tmp_path, source):
    spec = _spec(_classifier_spec(source, tmp_path), tmp_path)
    assert spec.source.kind == "sklearn"
    assert (spec.source.path is None) != (spec.source.factory is None)


@pytest.mark.parametrize(
    "source, field, fragment",
    [
        ({"kind": "sklearn"}, "source", "exactly one of 'path'"),
        ({"kind": "sklearn", "path": "m.joblib", "factory": "mod:make"}, "source", "exactly one of 'path'"),
        # a field the kind does not take (the estimator is fitted: no state_dict) is an error naming that field
        ({"kind": "sklearn", "path": "m.joblib", "state_dict": "w.pt"}, "source.state_dict", "kind 'sklearn' takes"),
        ({"kind": "sklearn", "factory": "mod:make", "state_dict": "w.pt"}, "source.state_dict", "kind 'sklearn' takes"),
        ({"kind": "sklearn", "factory": "not a ref"}, "source", "must be 'module:callable'"),
        ({"kind": "sklearn", "path": "m.joblib", "factory_args": {"n": 1}}, "source", "'factory_args' only with 'factory'"),
    ],
)
def test_spec_refuses_a_bad_sklearn_source_naming_the_field(tmp_path, source, field, fragment):
    with pytest.raises(SpecError) as err:
        _spec(_classifier_spec(source, tmp_path), tmp_path)
    assert f"field '{field}'" in str(err.value) and fragment in str(err.value)


def test_load_spec_names_a_missing_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_classifier_spec({"kind": "sklearn", "path": "nowhere.joblib"}, tmp_path)))
    (tmp_path / "validation.npz").write_bytes(b"")
    from tritonforge.spec import load_spec

    with pytest.raises(SpecError, match=r"field 'source.path': file not found: .*nowhere.joblib"):
        load_spec(path)


# --- loading and the reference run -------------------------------------------------------------------------------


def test_joblib_classifier_runs_predict_and_predict_proba(tmp_path, gbm, gbm_file):
    spec = _spec(_classifier_spec({"kind": "sklearn", "path": "model.joblib"}, tmp_path), tmp_path)
    source = load_source(spec)
    assert source.kind == "sklearn" and isinstance(source.obj, GradientBoostingClassifier)
    out = source.run({"input": X[:20]})
    assert list(out) == ["label", "probabilities"]
    assert out["label"].dtype == np.int64 and out["label"].shape == (20,)
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (20, 3)
    np.testing.assert_array_equal(out["label"], gbm.predict(X[:20]))
    np.testing.assert_allclose(out["probabilities"], gbm.predict_proba(X[:20]), rtol=1e-6)
    assert source_files(spec) == {"source.path": gbm_file}
    assert {"scikit-learn", "skl2onnx"} <= set(source_tools(spec))


def test_plain_pickle_file_loads(tmp_path, gbm):
    import pickle

    (tmp_path / "model.pkl").write_bytes(pickle.dumps(gbm))
    spec = _spec(_classifier_spec({"kind": "sklearn", "path": "model.pkl"}, tmp_path), tmp_path)
    np.testing.assert_array_equal(load_source(spec).run({"input": X})["label"], gbm.predict(X))


def test_factory_regressor_runs_predict_one_value_per_sample(tmp_path):
    (tmp_path / "skl_factory_mod.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from sklearn.datasets import make_regression
        from sklearn.linear_model import LinearRegression

        def make(noise=0.1):
            x, y = make_regression(n_samples=120, n_features=5, noise=noise, random_state=0)
            return LinearRegression().fit(x.astype(np.float32), y)
    """)
    )
    spec = _spec(
        _regressor_spec({"kind": "sklearn", "factory": "skl_factory_mod:make", "factory_args": {"noise": 0.2}}), tmp_path
    )
    try:
        source = load_source(spec)
        assert isinstance(source.obj, LinearRegression)
        out = source.run({"x": XR[:7]})
        assert out["variable"].dtype == np.float32 and out["variable"].shape == (7, 1)
        np.testing.assert_allclose(out["variable"][:, 0], source.obj.predict(XR[:7]), rtol=1e-6)
        assert source_files(spec) == {"source.factory": tmp_path / "skl_factory_mod.py"}
    finally:
        sys.modules.pop("skl_factory_mod", None)


# --- the skl2onnx export -------------------------------------------------------------------------------------------


def _ort(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("names", [("label", "probabilities"), ("cls", "scores")])
@pytest.mark.parametrize(
    "make",
    [
        lambda: GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0),
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    ],
    ids=["gbm", "pipeline"],
)
def test_export_reproduces_predict_and_predict_proba(tmp_path, names, make):
    est = make().fit(X, Y)
    spec = _spec(_classifier_spec({"kind": "sklearn", "path": "model.joblib"}, tmp_path, names), tmp_path)
    result = sklearn2onnx.export(LoadedSource("sklearn", est, lambda b: b), spec, tmp_path / "m.onnx")
    assert result.exporter == "skl2onnx"
    assert bool(result.notes) == (names != ("label", "probabilities"))  # a rename is reported
    model = onnx.load(str(tmp_path / "m.onnx"))
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    assert opsets["ai.onnx"] <= spec.export.opset and opsets.get("ai.onnx.ml", 1) <= 3  # skl2onnx: the least needed
    assert model.ir_version <= spec.export.ir_version
    assert not any(n.op_type == "ZipMap" for n in model.graph.node)
    session = _ort(tmp_path / "m.onnx")
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == list(names)
    label, proba = session.run(None, {"input": X})
    assert label.dtype == np.int64 and label.shape == (len(X),)
    np.testing.assert_array_equal(label, est.predict(X))
    np.testing.assert_allclose(proba, est.predict_proba(X), atol=1e-5)


def test_export_reproduces_a_regressor(tmp_path, regressor):
    spec = _spec(_regressor_spec({"kind": "sklearn", "path": "model.joblib"}), tmp_path)
    sklearn2onnx.export(LoadedSource("sklearn", regressor, lambda b: b), spec, tmp_path / "r.onnx")
    (pred,) = _ort(tmp_path / "r.onnx").run(None, {"x": XR})
    assert pred.shape == (len(XR), 1)
    np.testing.assert_allclose(pred[:, 0], regressor.predict(XR), rtol=1e-4, atol=1e-3)


# --- clear errors -------------------------------------------------------------------------------------------------


class _Unconvertible(ClassifierMixin, BaseEstimator):
    """A fitted classifier skl2onnx has no converter for."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, x):
        return np.zeros(len(x), dtype=np.int64)

    def predict_proba(self, x):
        return np.full((len(x), len(self.classes_)), 1.0 / len(self.classes_))


def _load_error(tmp_path: Path, obj, source: dict | None = None) -> str:
    if obj is not None:
        joblib.dump(obj, tmp_path / "model.joblib")
    spec = _spec(_classifier_spec(source or {"kind": "sklearn", "path": "model.joblib"}, tmp_path), tmp_path)
    with pytest.raises(SourceModelError) as err:
        load_source(spec)
    text = str(err.value)
    assert "\n" not in text and err.value.exit_code == 2
    return text


def test_missing_file_names_source_path(tmp_path):
    assert _load_error(tmp_path, None).startswith("field 'source.path': file not found")


def test_garbage_file_names_source_path(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"not a pickle at all")
    spec = _spec(_classifier_spec({"kind": "sklearn", "path": "model.joblib"}, tmp_path), tmp_path)
    with pytest.raises(SourceModelError, match=r"^field 'source.path': .* is not a loadable joblib/pickle file"):
        load_source(spec)


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ({"weights": [1, 2]}, "gave a dict, not a scikit-learn estimator"),
        (StandardScaler().fit(X), "not a scikit-learn estimator with predict()"),
        (KMeans(n_clusters=3, n_init=1, random_state=0).fit(X), "neither a classifier nor a regressor"),
        (GradientBoostingClassifier(), "not fitted"),
    ],
)
def test_not_a_fitted_estimator_names_source_path(tmp_path, obj, fragment):
    text = _load_error(tmp_path, obj)
    assert text.startswith("field 'source.path':") and fragment in text


def test_factory_errors_name_source_factory(tmp_path):
    (tmp_path / "skl_bad_factory.py").write_text("def make():\n    return 42\n\ndef boom():\n    raise ValueError('no')\n")
    try:
        text = _load_error(tmp_path, None, {"kind": "sklearn", "factory": "skl_bad_factory:make"})
        assert text.startswith("field 'source.factory':") and "gave a int" in text
        text = _load_error(tmp_path, None, {"kind": "sklearn", "factory": "skl_bad_factory:boom"})
        assert text == "field 'source.factory': skl_bad_factory:boom raised ValueError: no"
    finally:
        sys.modules.pop("skl_bad_factory", None)


def test_output_count_that_does_not_fit_the_estimator_names_outputs(tmp_path, gbm):
    joblib.dump(gbm, tmp_path / "model.joblib")
    data = _classifier_spec({"kind": "sklearn", "path": "model.joblib"}, tmp_path)
    data["outputs"] = data["outputs"][1:]
    with pytest.raises(SourceModelError, match=r"^field 'outputs': a scikit-learn classifier gives 2 output"):
        load_source(_spec(data, tmp_path))


def test_unconvertible_estimator_is_an_export_error_naming_the_field(tmp_path):
    est = _Unconvertible().fit(X, Y)
    spec = _spec(_classifier_spec({"kind": "sklearn", "path": "model.joblib"}, tmp_path), tmp_path)
    with pytest.raises(ExportError) as err:
        sklearn2onnx.export(LoadedSource("sklearn", est, lambda b: b), spec, tmp_path / "m.onnx")
    assert str(err.value).startswith("field 'source.path': skl2onnx cannot convert the _Unconvertible")
    assert "\n" not in str(err.value) and not (tmp_path / "m.onnx").exists()


def test_missing_skl2onnx_names_the_extra(tmp_path, gbm, monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import skl2onnx -> ImportError
    spec = _spec(_classifier_spec({"kind": "sklearn", "factory": "m:f"}, tmp_path), tmp_path)
    with pytest.raises(ExportError, match=r"^field 'source.factory': .*needs skl2onnx: pip install 'tritonforge\[sklearn\]'"):
        sklearn2onnx.export(LoadedSource("sklearn", gbm, lambda b: b), spec, tmp_path / "m.onnx")


def test_cli_build_reports_a_non_estimator_in_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    joblib.dump({"not": "a model"}, tmp_path / "model.joblib")
    np.savez(tmp_path / "validation.npz", input=X[:10])
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump(_classifier_spec({"kind": "sklearn", "path": "model.joblib"}, tmp_path) | {"timing": {"enabled": False}})
    )
    monkeypatch.setattr(
        sys, "argv", ["tritonforge", "build", str(tmp_path / "spec.yaml"), "--repo", str(tmp_path / "repo"), "--no-serving-check"]
    )
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: field 'source.path':" in err and "not a scikit-learn estimator" in err
    assert "Traceback" not in err
