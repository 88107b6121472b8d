"""Triton's own response cache as the first tier: on where its key (input names and bytes, not shapes) cannot
confuse two requests, off with the reason where it can. `tritonforge serve` and the local server start with the
cache the builds ask for. Two requests of equal bytes in different shapes never share an answer; the negative
control (the cache forced on for that model) shows that they would."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import yaml
from google.protobuf import text_format
from helpers import ROOT, digits_spec_copy, metric
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.builder.data import Dataset
from tritonforge.builder.pipeline import build
from tritonforge.client import Client
from tritonforge.repository.build_report import read_report
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer
from tritonforge.serving import metric_names as m

IMAGE = {"name": "image", "dtype": "float32", "shape": [64], "range": [0.0, 1.0]}
LOGITS = {"name": "logits", "dtype": "float32", "shape": [10]}
TIER = {"enabled": True, "size_bytes": 8 * 2**20}


def test_a_fixed_shape_model_is_answered_by_tritons_cache_before_python(tmp_path):
    spec = digits_spec_copy(tmp_path / "spec", inputs=[IMAGE], outputs=[LOGITS], serving={"triton_cache": TIER})
    repo = tmp_path / "repo"
    build(spec, repo)
    assert Repository(repo).config("digits").response_cache.enable
    assert read_report(repo, "digits").serving.triton_cache == "enabled"
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    with LocalTritonServer(repo) as server, Client(server.grpc_url) as client:
        assert server.cache_bytes == TIER["size_bytes"]  # what the build asked for, no option given
        miss = client.infer("digits", {"image": x})["logits"]
        hit = client.infer("digits", {"image": x})["logits"]
        assert hit.tobytes() == miss.tobytes()
        assert metric(server.metrics_url, "nv_cache_num_hits_per_model", model="digits") == 1
        assert metric(server.metrics_url, m.CACHE_MISSES) == 1  # the hit never reached the Python model
        assert metric(server.metrics_url, m.CACHE_HITS) == 0


def _token_spec(dest):
    """The variable-length token classifier (tests/models/var_length.py): input_ids and attention_mask [-1]."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "models" / "var_length.py", dest / "var_length.py")
    rng = np.random.default_rng(0)
    batches = [{"input_ids": rng.integers(0, 50, (4, n)), "attention_mask": np.ones((4, n), np.int64)} for n in (3, 6, 9)]
    Dataset(batches).save_npz(dest / "tokens.npz")
    seq = {"dtype": "int64", "shape": [-1], "dim_names": ["sequence"]}
    data = {
        "name": "tokens",
        "source": {"kind": "pytorch", "factory": "var_length:token_classifier"},
        "inputs": [{"name": "input_ids", "range": [0, 49], **seq}, {"name": "attention_mask", "range": [0, 1], **seq}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [3]}],
        "max_batch_size": 8,
        "validation": {"data": {"npz": "tokens.npz"}},
        "timing": {"enabled": False},
        "serving": {"triton_cache": TIER, "cache": {"kind": "none"}},
    }
    (dest / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dest / "spec.yaml"


def _pair() -> tuple[dict, dict]:
    """Two requests with equal bytes per input and different shapes: [1, 6] and [2, 3]."""
    ids = np.array([[5, 9, 1, 30, 2, 7]], np.int64)
    mask = np.ones((1, 6), np.int64)
    return {"input_ids": ids, "attention_mask": mask}, {"input_ids": ids.reshape(2, 3), "attention_mask": mask.reshape(2, 3)}


def _answers(repo):
    with LocalTritonServer(repo) as server, Client(server.grpc_url) as client:
        return [client.infer("tokens", r)["logits"] for r in _pair()], server.cache_bytes


def test_equal_bytes_in_different_shapes_never_share_an_answer(tmp_path):
    repo = tmp_path / "repo"
    outcome = build(_token_spec(tmp_path / "spec"), repo)
    why = "input 'input_ids' has a variable dim [-1]: Triton's cache key holds an input's bytes, not its shape"
    assert read_report(repo, "tokens").serving.triton_cache.startswith(f"not enabled: {why}")
    assert any(n.startswith(f"Triton's response cache is not enabled: {why}") for n in outcome.notes)
    assert not Repository(repo).config("tokens").response_cache.enable

    session = ort.InferenceSession(str(Repository(repo).file("tokens_onnx_fp32")), providers=["CPUExecutionProvider"])
    expected = [session.run(None, r)[0] for r in _pair()]
    (first, second), cache_bytes = _answers(repo)
    assert cache_bytes == 0  # no build in this repository asks for Triton's cache
    assert first.shape == (1, 3) and second.shape == (2, 3)
    np.testing.assert_allclose(first, expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second, expected[1], rtol=1e-5, atol=1e-6)

    # the negative control: the same repository with Triton's cache forced on answers the second request with
    # the first one's entry
    config_path = repo / "tokens" / "config.pbtxt"
    config = text_format.Parse(config_path.read_text(), mc.ModelConfig())
    config.response_cache.enable = True
    config_path.write_text(text_format.MessageToString(config))
    with LocalTritonServer(repo, cache_size=2**20) as server, Client(server.grpc_url) as client:
        forced = [client.infer("tokens", r)["logits"] for r in _pair()]
    assert forced[1].tobytes() == forced[0].tobytes()  # a [1, 3] answer to a [2, 3] request: shared, wrong
