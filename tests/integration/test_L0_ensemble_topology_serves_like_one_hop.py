"""serving.topology: ensemble. The public model is a Triton ensemble of a Python front step (checks, tokenizer)
and the compute step; served by the local server it answers as the one-hop build does, a bad input is the
request's INVALID_ARGUMENT through the ensemble, a rebuild from one topology to the other reloaded under load
loses no request, and the native compute step is written for a container (checked against Triton's rules)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from helpers import DIGITS, MINILM, digits_spec_copy, minilm_spec_copy

from tritonforge.builder.pipeline import build
from tritonforge.client import Client
from tritonforge.repository.manifest import Role
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer
from tritonforge.server.reload import reload_build
from tritonforge.testing.load import SteadyLoad

SERVING = {"dynamic_batching": {"max_queue_delay_us": 200}, "warmup": {"batch_sizes": [1]}}
ENSEMBLE = SERVING | {"topology": "ensemble"}


def _images(n: int = 64) -> np.ndarray:
    return np.load(DIGITS / "artifacts" / "validation.npz")["image"][:n]


def _raw_error(url: str, model: str, name: str, value: np.ndarray):
    """The error of one request sent with tritonclient itself (no client-side checks)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
    tensor.set_data_from_numpy(value)
    try:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, [tensor])
    finally:
        client.close()
    return raised.value


def _served(repo, model: str, batches: list[dict]) -> list[np.ndarray]:
    with LocalTritonServer(repo) as server, Client(server.grpc_url) as client:
        return [next(iter(client.infer(model, b).values())) for b in batches]


def test_an_ensemble_build_answers_as_the_one_hop_build_and_refuses_bad_input(tmp_path):
    one_hop = digits_spec_copy(tmp_path / "one_hop", serving=SERVING)
    ensemble = digits_spec_copy(tmp_path / "ensemble", serving=ENSEMBLE)
    build(one_hop, tmp_path / "repo_one_hop")
    outcome = build(ensemble, tmp_path / "repo_ensemble")
    repo = Repository(tmp_path / "repo_ensemble")
    assert repo.config("digits").platform == "ensemble"
    assert [s.model_name for s in repo.config("digits").ensemble_scheduling.step] == ["digits_front", "digits_ort"]
    assert repo.models("digits", Role.FRONT) == ["digits_front"]
    assert outcome.report.serving.topology == "ensemble"
    assert outcome.report.serving.compute_step.startswith("digits_ort: the in-process runner model")
    checked = {c.model: c.how for c in outcome.report.repository_check.models}
    assert checked["digits"] == checked["digits_front"] == checked["digits_ort"] == "tritonserver"

    images = _images()
    batches = [{"image": images[i : i + 8]} for i in range(0, len(images), 8)]
    expected = _served(tmp_path / "repo_one_hop", "digits", batches)
    with LocalTritonServer(tmp_path / "repo_ensemble") as server, Client(server.grpc_url) as client:
        got = [client.infer("digits", b)["logits"] for b in batches]
        bad = _raw_error(server.grpc_url, "digits", "image", np.where(images[:2] > 0.5, np.nan, images[:2]))
        assert client.infer("digits", batches[0])["logits"].tobytes() == got[0].tobytes()  # the server is fine
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert bad.status() == "StatusCode.INVALID_ARGUMENT" and "input 'image' holds 44 NaN or Inf" in bad.message()


def test_a_text_ensemble_tokenizes_in_its_front_step_and_answers_as_its_runner(tmp_path):
    spec = minilm_spec_copy(tmp_path / "spec", serving=ENSEMBLE)
    build(spec, tmp_path / "repo")
    sys.path.insert(0, str(MINILM))
    import minilm_data

    texts = minilm_data.validation_texts()[:6]
    with LocalTritonServer(tmp_path / "repo") as server, Client(server.grpc_url) as client:
        served = [client.infer("minilm", {"text": np.array([[t]], dtype=object)})["embedding"] for t in texts]
        direct = [client.infer("minilm_ort", minilm_data.encode([t]))["embedding"] for t in texts]
        bad = _raw_error(server.grpc_url, "minilm", "text", np.array([[b"\xff\xfe not utf-8"]], dtype=object))
    for a, b in zip(served, direct, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert bad.status() == "StatusCode.INVALID_ARGUMENT" and "text 0 of input 'text' is not valid UTF-8" in bad.message()


def test_a_rebuild_from_one_hop_to_ensemble_reloaded_under_load_fails_no_request(tmp_path):
    a = digits_spec_copy(tmp_path / "a", serving=SERVING)
    b = digits_spec_copy(
        tmp_path / "b", variants=[{"kind": "onnx_fp16"}], serving=ENSEMBLE | {"router": {"cpu_variant": "onnx_fp16"}}
    )
    repo = tmp_path / "repo"
    build(a, repo)
    inputs = [{"image": x[None]} for x in _images(128)]
    with LocalTritonServer(repo) as server, Client(server.grpc_url, timeout=30) as client:
        old = np.concatenate([client.infer("digits", x)["logits"] for x in inputs])
        with SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=4) as load:
            load.wait_for(100)
            build(b, repo)
            result = reload_build(server.grpc_url, repo, "digits")
            reloaded_at = time.monotonic()
            assert {"digits", "digits_front"} <= set(result.loaded) and "digits" not in result.failed
            load.wait_for(load.record.requests + 200)
        record = load.record
        assert Repository(repo).config("digits").platform == "ensemble"
    assert record.errors == []
    after = [a for a in record.answers if a.sent_at > reloaded_at]
    assert after and all(not np.allclose(a.outputs["logits"][0], old[a.index], atol=1e-5) for a in after)


def test_a_native_compute_step_is_the_primary_variants_model_checked_against_tritons_rules(tmp_path):
    spec = digits_spec_copy(tmp_path / "spec", serving=ENSEMBLE | {"ensemble_compute": "native"})
    outcome = build(spec, tmp_path / "repo")
    config = Repository(tmp_path / "repo").config("digits")
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["digits_front", "digits_onnx_fp32"]
    assert outcome.report.serving.compute_step == "digits_onnx_fp32: the primary variant's native model (onnxruntime)"
    checked = {c.model: c.how for c in outcome.report.repository_check.models}
    assert checked["digits"] == "config rules" and checked["digits_front"] == "tritonserver"


def test_perf_sweeps_an_ensemble_and_reports_each_step(tmp_path):
    import os
    import subprocess

    from helpers import ROOT

    from tritonforge.perf.report import load_result

    spec = digits_spec_copy(tmp_path / "spec", serving=ENSEMBLE | {"cache": {"kind": "none"}})
    build(spec, tmp_path / "repo")
    out = tmp_path / "perf"
    fast = ["--measurement-interval", "500", "--max-trials", "8", "--stability-percentage", "30"]
    args = ["perf", "digits", "--repo", str(tmp_path / "repo"), "--concurrency", "2", "--output-dir", str(out), *fast]
    proc = subprocess.run(
        [sys.executable, "-m", "tritonforge", *args], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (point,) = load_result(out / "perf_report.json").points
    assert point.ok and set(point.composing) == {"digits_front", "digits_ort"}
    front, compute = point.composing["digits_front"], point.composing["digits_ort"]
    assert front["requests"] == compute["requests"] > 0 and compute["avg_batch"] >= 1 and compute["server_ms"] > 0
    report = (out / "perf_report.md").read_text()
    assert "## Ensemble steps" in report and "| digits | compute | 1 | c2 | digits_ort |" in report
