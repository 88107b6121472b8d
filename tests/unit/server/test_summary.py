"""The local server's model states in one line: the public model that answers, and the native-only models that
are UNAVAILABLE by design (the local server has the Python backend alone), so a working build never looks broken;
a reload names them as expected instead of repeating Triton's error per model."""

from __future__ import annotations

import json

import pytest

from tritonforge.repository.manifest import MANIFEST_NAME
from tritonforge.server.process import ModelState
from tritonforge.server.summary import summarize

NO_ORT = "unable to find backend library for backend 'onnxruntime', try specifying runtime on the model configuration."
NO_TRT = "unable to find backend library for backend 'tensorrt', try specifying runtime on the model configuration."
CONFIGS = {
    "tinycnn": ('backend: "python"', "public"),
    "tinycnn_ort": ('backend: "python"', "runner"),
    "tinycnn_onnx_fp32": ('backend: "onnxruntime"', "rung"),
    "tinycnn_trt_fp16": ('platform: "tensorrt_plan"', "rung"),
}


@pytest.fixture
def repo(tmp_path):
    for model, (line, _) in CONFIGS.items():
        (tmp_path / model / "1").mkdir(parents=True)
        (tmp_path / model / "config.pbtxt").write_text(f'name: "{model}"\n{line}\n')
    manifest = {
        **{"name": "tinycnn", "tritonforge_version": "0", "fingerprint": "f", "spec_hash": "s", "version": 1},
        **{"inputs": {}, "tools": {}, "roles": {m: {"role": role} for m, (_, role) in CONFIGS.items()}},
    }
    (tmp_path / "tinycnn" / MANIFEST_NAME).write_text(json.dumps(manifest))
    return tmp_path


def test_one_line_says_which_model_to_call_and_why_the_native_ones_are_unavailable(repo):
    states = [
        ModelState("tinycnn", "1", "READY", ""),
        ModelState("tinycnn_ort", "1", "READY", ""),
        ModelState("tinycnn_onnx_fp32", "1", "UNAVAILABLE", NO_ORT),
        ModelState("tinycnn_trt_fp16", "1", "UNAVAILABLE", NO_TRT),
    ]
    summary = summarize(repo, states)
    assert list(summary.answering) == ["tinycnn"] and not summary.not_ready
    assert summary.native_only == {"tinycnn_onnx_fp32": "onnxruntime", "tinycnn_trt_fp16": "tensorrt"}
    line = summary.line()
    assert "\n" not in line and line.startswith("call 'tinycnn' (READY: with its in-process ONNX Runtime rung")
    assert "native-only, UNAVAILABLE here as expected: tinycnn_onnx_fp32, tinycnn_trt_fp16" in line
    assert "no onnxruntime or tensorrt backend" in line and "Triton container" in line


def test_a_public_model_that_fails_is_said_and_never_counted_as_expected(repo):
    states = [
        ModelState("tinycnn", "1", "UNAVAILABLE", "runner.onnx: expected sha256 ab, found cd"),
        ModelState("tinycnn_onnx_fp32", "1", "UNAVAILABLE", "failed to load: bad file"),  # not a missing backend
    ]
    summary = summarize(repo, states)
    assert not summary.answering and not summary.native_only
    assert "not answering: 'tinycnn' UNAVAILABLE: runner.onnx: expected sha256" in summary.line()


def test_reload_names_native_only_models_as_expected(repo, monkeypatch):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tritonforge.server import reach, reload

    class Server:
        def __init__(self, url):
            pass

        def load_model(self, model, **kwargs):
            if model == "tinycnn_onnx_fp32":
                raise InferenceServerException(NO_ORT)

        def close(self):
            pass

    monkeypatch.setattr(grpcclient, "InferenceServerClient", Server)
    monkeypatch.setattr(reach, "require_server", lambda url: None)
    result = reload.reload_build("127.0.0.1:8001", repo, "tinycnn")
    assert result.native_only == {"tinycnn_onnx_fp32": "onnxruntime"} and not result.failed
    assert set(result.loaded) == set(CONFIGS) - {"tinycnn_onnx_fp32"}
