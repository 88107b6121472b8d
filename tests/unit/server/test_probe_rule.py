"""The readiness probe judges the answer, not only that there is one: the rule it applies per output kind
(tritonforge/server/probe.py), the check end to end against a stand-in HTTP endpoint, and how the build
chooses the probe's sample so that its own published variants pass (tritonforge/builder/probe_sample.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonforge.builder.data import Dataset
from tritonforge.builder.probe_sample import candidates, choose, expected_outputs
from tritonforge.builder.variants import VariantOutcome
from tritonforge.server import probe
from tritonforge.server.probe import disagreements, output_margin
from tritonforge.spec import parse_spec

CLASS = {"kind": "class_scores", "shape": [1, 3], "reference": [0.1, 2.0, -1.0]}


def test_class_scores_pass_with_the_reference_s_argmax_and_fail_with_another():
    assert output_margin(CLASS, [0.0, 1.5, 1.4])[0] >= 0  # scores moved, same class: the gate allows that
    margin, detail = output_margin(CLASS, [2.1, 2.0, -1.0])
    assert margin < 0 and detail == "class 0 where the reference has class 1"
    rows = {"kind": "class_scores", "shape": [1, 2, 3], "reference": [0, 1, 0, 5, 0, 0]}
    assert output_margin(rows, [0, 1, 0, 5, 0, 0])[0] > 0
    assert output_margin(rows, [0, 1, 0, 0, 0, 5])[1] == "class 2 where the reference has class 0"  # row by row


def test_embeddings_pass_at_the_gate_s_cosine_and_fail_below():
    e = {"kind": "embedding", "shape": [1, 3], "reference": [1.0, 0.0, 0.0], "min_cosine": 0.99}
    assert output_margin(e, [1.0, 0.1, 0.0])[0] >= 0  # cosine 0.995
    margin, detail = output_margin(e, [1.0, 0.2, 0.0])  # cosine 0.981
    assert margin < 0 and detail.startswith("cosine 0.98") and "needs >= 0.99" in detail
    assert output_margin(e, [0.0, 0.0, 0.0])[0] < 0  # zeros are not the reference's direction


def test_regressions_pass_within_tolerance_or_the_gate_s_relative_error():
    e = {"kind": "regression", "shape": [1, 2], "reference": [100.0, 0.0], "atol": 1e-4, "rtol": 1e-3, "max_mean_rel": 0.05}
    assert output_margin(e, [104.9, 0.00005])[0] >= 0  # 5% of 100; atol at 0
    assert output_margin(e, [105.1, 0.0])[0] < 0
    margin, detail = output_margin(e, [100.0, 0.001])
    assert margin < 0 and "where the reference is 0" in detail


def test_non_finite_or_missing_values_fail_every_kind():
    assert output_margin(CLASS, [float("nan"), 2.0, -1.0])[0] < 0
    assert output_margin(CLASS, [0.1, 2.0])[1] == "2 values where the reference has 3"


def test_disagreements_name_the_output():
    expected = {"outputs": {"logits": CLASS}}
    assert disagreements(expected, {"outputs": [{"name": "logits", "data": [0.1, 2.0, -1.0]}]}) == []
    assert disagreements(expected, {"outputs": [{"name": "logits", "data": [9.0, 2.0, -1.0]}]}) == [
        "output 'logits' disagrees with the build's reference for the probe sample: class 0 where the reference has class 1"
    ]
    assert disagreements(expected, {"outputs": []}) == ["output 'logits' missing from the probe answer"]


@pytest.fixture
def endpoint():
    """A stand-in for Triton's HTTP endpoint that is ready and answers `answer["logits"]`."""
    answer = {"logits": [0.1, 2.0, -1.0]}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(b"")

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self._reply(
                json.dumps(
                    {"outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 3], "data": answer["logits"]}]}
                ).encode()
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answer
    server.shutdown()
    server.server_close()


def test_the_probe_fails_on_a_wrong_answer_naming_the_model_and_output(tmp_path, endpoint):
    url, answer = endpoint
    model = tmp_path / "digits"
    model.mkdir()
    (model / probe.MANIFEST).write_text("{}")
    (model / probe.PROBE_REQUEST).write_text(json.dumps({"inputs": []}))
    assert probe.check(tmp_path, url) == []  # a build from before expectations: an answer is enough
    (model / probe.PROBE_EXPECTED).write_text(json.dumps({"outputs": {"logits": CLASS}}))
    assert probe.check(tmp_path, url) == []
    answer["logits"] = [3.0, 2.0, -1.0]
    assert probe.check(tmp_path, url) == [
        "digits: output 'logits' disagrees with the build's reference for the probe sample: class 0 where the "
        "reference has class 1"
    ]
    assert probe.main(["--repo", str(tmp_path), "--http-url", url]) == 1
    assert probe.main(["--repo", str(tmp_path), "--http-url", url.removeprefix("http://")]) == 1  # host:port
    answer["logits"] = [1.0, 2.0, -1.0]
    assert probe.main(["--repo", str(tmp_path), "--http-url", url.removeprefix("http://")]) == 0
    assert probe.main(["--repo", str(tmp_path), "--url", url]) == 0  # the old name, for manifests that still use it
    with pytest.raises(SystemExit) as refused:  # a gRPC-style host:port as --url: a usage error, not a URLError
        probe.main(["--repo", str(tmp_path), "--url", url.removeprefix("http://")])
    assert refused.value.code == 2


# ---- the build's side ------------------------------------------------------------------------------
def _spec(**gate):
    return parse_spec(
        {
            "name": "m",
            "source": {"kind": "onnx", "path": "m.onnx"},
            "max_batch_size": 8,
            "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
            "outputs": [
                {"name": "logits", "dtype": "float32", "shape": [3]},
                {"name": "emb", "dtype": "float32", "shape": [3]},
                {"name": "score", "dtype": "float32", "shape": [1]},
            ],
            "validation": {"data": {"npz": "v.npz", "labels": "y"}, "tolerance": {"atol": 1e-4, "rtol": 1e-3}},
            "gate": {"min_cosine": 0.98, **gate},
        }
    )


def test_expected_outputs_carry_each_output_s_kind_and_thresholds():
    spec = _spec(outputs={"score": {"max_mean_rel": 0.1}})
    e = expected_outputs(
        spec,
        {
            "logits": np.array([[0.1, 0.2, 0.3]], np.float32),
            "emb": np.array([[1, 0, 0]], np.float32),
            "score": np.array([[2.5]], np.float32),
        },
    )
    assert e["outputs"]["logits"] == {"kind": "class_scores", "shape": [1, 3], "reference": [0.1, 0.2, 0.3]}
    assert e["outputs"]["emb"]["min_cosine"] == 0.98
    assert {k: e["outputs"]["score"][k] for k in ("kind", "atol", "rtol", "max_mean_rel")} == {
        "kind": "regression",
        "atol": 1e-4,
        "rtol": 1e-3,
        "max_mean_rel": 0.1,
    }


def _linear(path, w: np.ndarray) -> str:
    """x @ w as logits, emb and score (its first column): one ONNX file."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        helper.make_node("Identity", ["logits"], ["emb"]),
        helper.make_node("Slice", ["logits", "s", "e", "a"], ["score"]),
    ]
    inits = [numpy_helper.from_array(w.astype(np.float32), "w")] + [
        numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("s", 0), ("e", 1), ("a", 1))
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, d]) for n, d in (("logits", 3), ("emb", 3), ("score", 1))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_the_build_chooses_a_sample_every_published_variant_answers_within_the_rule(tmp_path):
    spec = _spec()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    w = rng.normal(size=(4, 3))
    fp32 = VariantOutcome(
        "onnx_fp32", "onnx_fp32", "onnxruntime", "fp32", {}, status="passed", file=_linear(tmp_path / "fp32.onnx", w)
    )
    # a variant that passed the gate yet answers sample 0 with another class than FP32
    logits = x @ w
    top = logits[0].argmax()
    skew = w.copy()
    skew[:, (top + 1) % 3] += 2.0 * np.sign(x[0]) * (abs(logits[0]).max() + 1) / max(np.abs(x[0]).sum(), 1e-3)
    assert (x[:1] @ skew).argmax() != top
    variant = VariantOutcome(
        "onnx_int8", "onnx_int8_dynamic", "onnxruntime", "int8", {}, status="passed", file=_linear(tmp_path / "int8.onnx", skew)
    )
    cands = candidates(spec, Dataset([{"x": x}]), None, None)
    assert len(cands) == 16 and cands[3].request[0] == {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x[3].tolist()}
    alone = choose(spec, cands, [fp32], fp32, None)
    both = choose(spec, cands, [variant, fp32], fp32, None)
    assert both.index != 0 and both.expected is not None and both.margin >= 0
    assert json.loads(both.request)["inputs"] == cands[both.index].request
    expected = json.loads(both.expected)
    assert expected["sample"] == both.index
    np.testing.assert_allclose(expected["outputs"]["logits"]["reference"], logits[both.index], rtol=1e-6)
    for run_w in (w, skew):  # both answers of the chosen sample pass the probe's own rule
        answer = x[both.index : both.index + 1] @ run_w
        outputs = [
            {"name": "logits", "data": answer.ravel().tolist()},
            {"name": "emb", "data": answer.ravel().tolist()},
            {"name": "score", "data": answer[:, :1].ravel().tolist()},
        ]
        assert disagreements(expected, {"outputs": outputs}) == []
    assert alone.margin >= both.margin


def test_without_a_sample_every_variant_answers_within_the_rule_the_probe_asks_for_an_answer_only(tmp_path):
    spec = _spec()
    x = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    w = np.random.default_rng(2).normal(size=(4, 3))
    fp32 = VariantOutcome(
        "onnx_fp32", "onnx_fp32", "onnxruntime", "fp32", {}, status="passed", file=_linear(tmp_path / "fp32.onnx", w)
    )
    negated = VariantOutcome(
        "onnx_fp16", "onnx_fp16", "onnxruntime", "fp16", {}, status="passed", file=_linear(tmp_path / "neg.onnx", -w)
    )
    chosen = choose(spec, candidates(spec, Dataset([{"x": x}]), None, None), [negated, fp32], fp32, None)
    assert chosen.expected is None and chosen.margin < 0 and "no held-out sample" in chosen.notes[0]
