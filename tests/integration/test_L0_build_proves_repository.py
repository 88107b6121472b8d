"""The build proves its repository: models none of the examples has (a tree ensemble through skl2onnx, a
BERT-style classifier whose two inputs share a dynamic length, an LSTM regressor) are built, checked in a local
tritonserver before publication, served, and called with plain tritonclient; their answers equal the source
model's. A spec whose public model Triton refuses fails the build with Triton's reason and leaves the
repository as it was; a variant that converted nothing is skipped, never published."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import yaml
from helpers import ROOT, digits_spec_copy, metric, tree_hashes
from tritonclient.utils import InferenceServerException

from tritonforge.builder.pipeline import build
from tritonforge.builder.serving_check import ServingCheckError
from tritonforge.repository.config import read_config
from tritonforge.server.process import LocalTritonServer
from tritonforge.serving import metric_names as m

MODELS = ROOT / "tests" / "models"
GBM = ROOT / "examples" / "sklearn_gbm"


def _infer(client, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    tensors = []
    for name, arr in inputs.items():
        t = grpcclient.InferInput(name, list(arr.shape), "INT64" if arr.dtype == np.int64 else "FP32")
        t.set_data_from_numpy(arr)
        tensors.append(t)
    result = client.infer(model, tensors)
    return {n: result.as_numpy(n) for n in outputs}


def _spec(dest: Path, data: dict) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS / "shared_length.py", dest / "shared_length.py")
    path = dest / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _models():
    sys.path.insert(0, str(MODELS))
    import shared_length

    return shared_length


# ---- a tree ensemble through skl2onnx ------------------------------------------------------------------
@pytest.fixture(scope="module")
def gbm(tmp_path_factory):
    spec_loader = importlib.util.spec_from_file_location("gbm_train", GBM / "train.py")
    train = importlib.util.module_from_spec(spec_loader)
    spec_loader.loader.exec_module(train)
    train.main([])
    work = tmp_path_factory.mktemp("gbm")
    data = yaml.safe_load((GBM / "spec.yaml").read_text())
    for section in ("validation", "calibration"):
        if section in data:
            data[section]["data"]["npz"] = str(GBM / data[section]["data"]["npz"])
    data["source"]["path"] = str(GBM / data["source"]["path"])
    data["timing"] = {"enabled": False}
    (work / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    repo = work / "model_repository"
    outcome = build(work / "spec.yaml", repo)
    return outcome, repo, data


def test_a_tree_ensemble_builds_without_variants_that_converted_nothing(gbm):
    outcome, repo, _data = gbm
    status = {v.id: (v.status, v.reason) for v in outcome.report.variants}
    assert status["onnx_fp32"][0] == "passed"
    for vid in ("onnx_fp16", "onnx_int8_dynamic"):
        assert status[vid] == ("skipped", "nothing to convert (TreeEnsembleClassifier)"), status[vid]
    assert all("fp16" not in m and "int8" not in m for m in outcome.manifest.models)  # never published


def test_every_config_of_the_tree_build_gives_its_scalar_dims_and_a_reshape(gbm):
    outcome, repo, _data = gbm
    for model in outcome.manifest.models:
        config = read_config(repo / model / "config.pbtxt")
        label = next(o for o in config.output if o.name == "label")
        assert list(label.dims) == [1] and label.HasField("reshape") and list(label.reshape.shape) == [], model
    checks = {c.model: c.how for c in outcome.report.repository_check.models}
    assert checks == {"sklearn_gbm_onnx_fp32": "config rules", "sklearn_gbm_ort": "tritonserver", "sklearn_gbm": "tritonserver"}


def test_the_tree_ensemble_answers_plain_tritonclient_as_the_estimator_does(gbm):
    import joblib

    _outcome, repo, data = gbm
    estimator = joblib.load(data["source"]["path"])
    with np.load(data["validation"]["data"]["npz"]) as npz:
        x = npz["input"][:20].astype(np.float32)
    with LocalTritonServer(repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        got = _infer(client, "sklearn_gbm", {"input": x}, ["label", "probabilities"])
        client.close()
    assert got["label"].shape == (20, 1)
    np.testing.assert_array_equal(got["label"].ravel(), estimator.predict(x))
    np.testing.assert_allclose(got["probabilities"], estimator.predict_proba(x), atol=1e-5)


# ---- two inputs sharing a dynamic length -------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    models = _models()
    work = tmp_path_factory.mktemp("masked")
    np.savez(
        work / "validation.npz",
        **{f"b{i}/{k}": v for i, length in enumerate((6, 11)) for k, v in models.token_batch(16, length, seed=i).items()},
    )
    spec = _spec(
        work / "spec",
        {
            "name": "masked_clf",
            "source": {"kind": "pytorch", "factory": "shared_length:build_classifier"},
            "inputs": [
                {"name": "input_ids", "dtype": "int64", "shape": [-1], "dim_names": ["sequence"], "range": [0, models.VOCAB - 1]},
                {"name": "attention_mask", "dtype": "int64", "shape": [-1], "dim_names": ["sequence"], "range": [0, 1]},
            ],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [3]}],
            "max_batch_size": 16,
            "validation": {"data": {"npz": str(work / "validation.npz")}},
            "timing": {"enabled": False},
            "serving": {"router": {"breaker_failures": 2}},
        },
    )
    repo = work / "model_repository"
    build(spec, repo)
    with LocalTritonServer(repo) as server:
        yield server, models


def test_two_inputs_sharing_a_length_are_served_as_the_module_computes(classifier):
    server, models = classifier
    module = models.build_classifier()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for length in (4, 9, 23):  # 23: a length the validation data never had
        batch = models.token_batch(3, length, seed=100 + length)
        got = _infer(client, "masked_clf", batch, ["logits"])["logits"]
        with torch.no_grad():
            want = module(torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    client.close()


def test_inputs_disagreeing_on_a_shared_length_are_the_requests_fault(classifier):
    server, models = classifier
    client = grpcclient.InferenceServerClient(server.grpc_url)
    good = models.token_batch(1, 10, seed=7)
    bad = {"input_ids": good["input_ids"], "attention_mask": models.token_batch(1, 12, seed=8)["attention_mask"]}
    for _ in range(4):  # more than breaker_failures: a counted failure would open the breaker
        with pytest.raises(InferenceServerException) as err:
            _infer(client, "masked_clf", bad, ["logits"])
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "'input_ids' and 'attention_mask' share dim 'sequence' but have lengths 10 and 12" in err.value.message()
    assert _infer(client, "masked_clf", good, ["logits"])["logits"].shape == (1, 3)
    client.close()
    assert metric(server.metrics_url, m.ROUTER_FAILURES, model="masked_clf") == 0
    assert metric(server.metrics_url, m.ROUTER_BREAKER_OPEN, model="masked_clf") == 0
    assert metric(server.metrics_url, m.ROUTER_REJECTED, model="masked_clf") >= 4


# ---- a recurrent model -----------------------------------------------------------------------------------------
def test_a_recurrent_model_over_any_length_is_served_as_the_module_computes(tmp_path):
    models = _models()
    np.savez(
        tmp_path / "validation.npz",
        **{f"b{i}/series": models.series_batch(12, length, seed=i)["series"] for i, length in enumerate((5, 9))},
    )
    spec = _spec(
        tmp_path / "spec",
        {
            "name": "lstm_reg",
            "source": {"kind": "pytorch", "factory": "shared_length:build_recurrent"},
            "inputs": [{"name": "series", "dtype": "float32", "shape": [-1, models.FEATURES], "dim_names": ["time"]}],
            "outputs": [{"name": "value", "dtype": "float32", "shape": [1]}],
            "max_batch_size": 8,
            "validation": {"data": {"npz": str(tmp_path / "validation.npz")}},
            "timing": {"enabled": False},
        },
    )
    repo = tmp_path / "model_repository"
    outcome = build(spec, repo)
    assert {c.how for c in outcome.report.repository_check.models} == {"tritonserver", "config rules"}
    module = models.build_recurrent()
    with LocalTritonServer(repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for length in (3, 7, 30):
            x = models.series_batch(2, length, seed=length)
            got = _infer(client, "lstm_reg", x, ["value"])["value"]
            with torch.no_grad():
                want = module(torch.from_numpy(x["series"])).numpy()
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
        client.close()


# ---- what the check refuses --------------------------------------------------------------------------------------
def test_a_public_model_triton_refuses_fails_the_build_and_leaves_the_repository(tmp_path, digits_spec, monkeypatch):
    repo = tmp_path / "model_repository"
    build(digits_spec_copy(tmp_path / "good"), repo)
    before = tree_hashes(repo)
    # The replicas' cache secret is read from a file that is not there: the public model refuses to initialize.
    monkeypatch.setenv("TRITONFORGE_CACHE_SECRET_FILE", str(tmp_path / "no-such-secret"))
    spec = digits_spec_copy(tmp_path / "redis", serving={"cache": {"kind": "redis"}})
    with pytest.raises(ServingCheckError) as err:
        build(spec, repo)
    assert err.value.exit_code == 2
    assert "Triton refused model 'digits'" in str(err.value) and "no-such-secret" in str(err.value)
    assert tree_hashes(repo) == before


def test_the_report_names_the_runtime_every_onnx_figure_came_from(gbm):
    outcome, repo, _data = gbm
    report = json.loads((repo / "sklearn_gbm" / "build_report.json").read_text())
    runtime = report["repository_check"]["runtime"]
    assert runtime.startswith("onnxruntime ") and runtime.endswith("(serving environment)")
    fp32 = next(v for v in report["variants"] if v["id"] == "onnx_fp32")
    assert fp32["measured_in"] == runtime
    assert report["spec"]["name"] == "sklearn_gbm" and outcome.report.repository_check.seconds > 0
