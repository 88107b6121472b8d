"""The accuracy gate in production (serving.shadow) on the real local tritonserver: live answers of the serving
INT8 variant compared with FP32, the variant demoted when live traffic breaks the gate, every request answered.

The model, by construction: an MLP over 17 features whose last feature every weight ignores (its row of the first
weight matrix is zero). The held-out set has that feature at 0, so dynamic INT8 passes the gate (cosine >= 0.998
against FP32 here; the gate asks 0.98). Traffic with that feature at 1e4 is answered by FP32 exactly as without it,
but dynamic INT8 spends its 8 bits of activation range on 1e4: every other feature rounds to zero and the answers
collapse (cosine about -0.4) on any CPU."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml
from helpers import metric
from onnx import TensorProto, helper, numpy_helper

from tritonforge.builder.pipeline import build
from tritonforge.client import Client
from tritonforge.server import probe
from tritonforge.server.process import LocalTritonServer
from tritonforge.serving import metric_names as m

FEATURES, HIDDEN, CLASSES = 16, 64, 10
VARIANT = "in_process:mlp_onnx_int8_dynamic"
FP32_RUNG = "in_process:mlp_onnx_fp32"
WINDOW = 50


def _spec(root: Path, **shadow: object) -> Path:
    rng = np.random.default_rng(0)
    w1 = np.zeros((FEATURES + 1, HIDDEN), np.float32)
    w1[:FEATURES] = rng.normal(size=(FEATURES, HIDDEN)) / 4  # the last feature's row stays zero
    b1 = (rng.normal(size=HIDDEN) * 0.1).astype(np.float32)
    w2 = (rng.normal(size=(HIDDEN, CLASSES)) / 8).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["scores"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES + 1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")],
    )
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "mlp.onnx")
    np.savez(root / "val.npz", x=_traffic(256, seed=1, outlier=False))
    spec = {
        "name": "mlp",
        "source": {"kind": "onnx", "path": "mlp.onnx"},
        "max_batch_size": 8,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [FEATURES + 1]}],
        "outputs": [{"name": "scores", "dtype": "float32", "shape": [CLASSES]}],
        "validation": {"data": {"npz": "val.npz"}},
        "variants": [{"kind": "onnx_int8_dynamic", "per_channel": True}],
        "gate": {"min_cosine": 0.98},
        "timing": {"enabled": False},
        "serving": {
            "dynamic_batching": {"max_queue_delay_us": 0},
            "warmup": {"batch_sizes": [1]},
            "router": {"cpu_variant": "onnx_int8_dynamic"},  # the in-process rung that serves: INT8
            # a queue that holds every request sent at once: the shadow runs at the lowest priority and this
            # test counts every sample (drops are counted too, but would leave the windows short)
            "shadow": {"fraction": 1.0, "window": WINDOW, "min_samples": 20, "max_pending": 1000} | shadow,
        },
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


def _traffic(n: int, seed: int, outlier: bool) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, FEATURES + 1)).astype(np.float32)
    x[:, FEATURES] = 1.0e4 if outlier else 0.0
    return x


def _send(client: Client, rows: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Each row as one request from 4 threads: (answers in row order, errors)."""

    def one(row: np.ndarray) -> np.ndarray | str:
        try:
            return client.infer("mlp", {"x": row[None]})["scores"][0]
        except Exception as e:
            return f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, rows))
    return [r for r in results if not isinstance(r, str)], [r for r in results if isinstance(r, str)]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_a_variant_that_drifts_on_live_traffic_is_demoted_within_the_window_and_every_request_answered(tmp_path, reliability):
    spec = _spec(tmp_path / "spec")
    repo = tmp_path / "repo"
    build(spec, repo)
    fp32 = ort.InferenceSession(str(tmp_path / "spec" / "mlp.onnx"))

    def reference(rows: np.ndarray) -> np.ndarray:
        return fp32.run(None, {"x": rows})[0]

    log = tmp_path / "tritonserver.log"
    errors: list[str] = []
    with LocalTritonServer(repo, log_path=log) as server, Client(server.grpc_url, timeout=30) as client:
        url = server.metrics_url

        # In distribution: INT8 serves (its answers are not FP32's bits) and keeps the gate.
        calm = _traffic(200, seed=2, outlier=False)
        answers, failed = _send(client, calm)
        errors += failed
        assert len(answers) == len(calm)
        assert np.abs(np.stack(answers) - reference(calm)).max() > 0, "the INT8 variant answered"
        assert _cosines(np.stack(answers), reference(calm)).min() >= 0.98
        _wait_compared(url, len(calm))
        assert metric(url, m.ROUTER_RUNG_DEMOTED, variant=VARIANT) == 0
        assert metric(url, m.SHADOW_BROKEN, variant=VARIANT) == 0
        assert metric(url, m.SHADOW_WINDOW_SAMPLES, variant=VARIANT) == WINDOW

        # Out of distribution: the answers collapse until the shadow demotes INT8; FP32 answers from then on.
        sent, wrong_before = 0, 0
        while metric(url, m.ROUTER_RUNG_DEMOTED, variant=VARIANT) == 0 and sent < 3 * WINDOW:
            rows = _traffic(10, seed=100 + sent, outlier=True)
            answers, failed = _send(client, rows)
            errors += failed
            wrong_before += int((_cosines(np.stack(answers), reference(rows)) < 0.98).sum())
            sent += len(rows)
            _wait_compared(url, len(calm) + sent)
        assert metric(url, m.ROUTER_RUNG_DEMOTED, variant=VARIANT) == 1, f"not demoted after {sent} out-of-distribution requests"
        assert wrong_before > 0, "INT8 answered out-of-distribution requests wrongly before it was demoted"
        assert sent <= WINDOW, f"demoted after {sent} out-of-distribution requests, more than the window ({WINDOW})"

        mixed = np.concatenate([_traffic(100, seed=7, outlier=True), _traffic(100, seed=8, outlier=False)])
        answers, failed = _send(client, mixed)
        errors += failed
        np.testing.assert_allclose(np.stack(answers), reference(mixed), rtol=1e-4, atol=1e-4)  # FP32's answers
        assert metric(url, m.ROUTER_REQUESTS, variant=FP32_RUNG) >= len(mixed)
        assert probe.check(repo, f"http://{server.http_url}", 10.0) == []  # a demoted variant is not an outage
        broken = metric(url, m.SHADOW_BROKEN, variant=VARIANT)
        compared = metric(url, m.SHADOW_SAMPLES, variant=VARIANT)
    text = log.read_text(errors="replace")
    demotions = [line for line in text.splitlines() if f"rung {VARIANT} demoted" in line]
    reliability(
        "shadow demotes a drifting variant",
        "serving.shadow at fraction 1 on an INT8 variant; 200 in-distribution requests, then out-of-distribution "
        "traffic until demoted, then 200 mixed (4 threads)",
        len(calm) + sent + len(mixed),
        len(errors),
        notes=f"demoted after {sent} out-of-distribution requests ({wrong_before} answered wrongly before); "
        f"{compared:.0f} samples compared, {broken:.0f} broke the gate",
    )
    assert errors == []
    assert len(demotions) == 1, demotions
    assert "min cosine" in demotions[0] and "needs >= 0.98" in demotions[0]
    assert compared >= len(calm) and broken > 0


def _wait_compared(url: str, requests: int, timeout: float = 60.0) -> None:
    """Until the shadow compared (or dropped, or failed on) every request INT8 answered so far (FP32's own answers
    are never compared)."""
    deadline = time.monotonic() + timeout
    done = 0.0
    while time.monotonic() < deadline:
        done = sum(metric(url, name) for name in (m.SHADOW_SAMPLES, m.SHADOW_DROPPED, m.SHADOW_ERRORS))
        if done + metric(url, m.ROUTER_REQUESTS, variant=FP32_RUNG) >= requests:
            return
        time.sleep(0.2)
    raise AssertionError(f"the shadow compared {done:.0f} of {requests} requests in {timeout:.0f} s")
