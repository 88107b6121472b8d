"""The digits model served by the real local tritonserver, called over gRPC with the project's client."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.builder.sources import load_source
from tritonforge.client import AsyncClient, Client, InputError, ModelNotFound
from tritonforge.perf.triton_stats import model_stats
from tritonforge.repository.reader import Repository
from tritonforge.spec import load_spec

pytestmark = pytest.mark.integration


def test_served_predictions_equal_pytorch(digits_server, digits_repo, digits_spec, digits_validation):
    images, labels = digits_validation
    reference = load_source(load_spec(digits_spec)).run({"image": images})["logits"]
    with Client(digits_server.grpc_url) as client:
        served = np.concatenate(
            [client.infer("digits", {"image": images[i : i + 64]})["logits"] for i in range(0, len(images), 64)]
        )
    assert served.shape == reference.shape
    assert (served.argmax(1) == reference.argmax(1)).mean() >= 0.995
    # Exactly what the in-process runner's ONNX file computes (whichever variant the build chose for it) on the
    # same batches: a dynamic INT8 variant's answers depend on their batch neighbours.
    runner = OrtModel(Repository(digits_repo).file("digits_ort"), ["logits"])
    direct = np.concatenate([runner.run({"image": images[i : i + 64]})["logits"] for i in range(0, len(images), 64)])
    np.testing.assert_allclose(served, direct, atol=1e-5, rtol=1e-5)


def _runner_is_batch_dependent(repo) -> bool:
    from tritonforge.builder.converters import CONVERTERS
    from tritonforge.repository.build_report import read_report

    report = read_report(repo, "digits")
    kind = next(v.kind for v in report.variants if v.id == report.serving.in_process_runner)
    return CONVERTERS[kind].batch_dependent


def test_concurrent_requests_are_batched_and_answered_in_order(digits_server, digits_repo, digits_validation):
    images, _ = digits_validation
    images = images[256:512]  # not sent by other tests: every request is a cache miss
    admin = grpcclient.InferenceServerClient(digits_server.grpc_url)
    before = model_stats(admin, "digits")
    with Client(digits_server.grpc_url) as client:
        client.infer("digits", {"image": images[:1]})
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda i: client.infer("digits", {"image": images[i : i + 1]})["logits"], range(256)))
        direct = client.infer("digits", {"image": images[:64]})["logits"]
    counted = model_stats(admin, "digits") - before
    admin.close()
    assert counted.inference_count == 1 + 256 + 64  # inference_count counts samples
    assert counted.execution_count < counted.inference_count  # the dynamic batcher merged requests
    # In order: each answer is the one computed for its own image (nearest row of the direct batch, and close
    # to it: the batcher's groups are not the direct batch, which moves a dynamic INT8 variant's answers a little).
    served = np.concatenate(results[:64])
    distances = np.linalg.norm(served[:, None, :] - direct[None, :, :], axis=2)
    assert (distances.argmin(1) == np.arange(64)).all()
    # FP32 too differs in the last bits between batch compositions (ONNX Runtime's GEMM blocks by batch size):
    # 1e-4 on logits of magnitude ~10, far below the 3.9 that separates the nearest two images' answers here.
    np.testing.assert_allclose(served, direct, atol=0.5 if _runner_is_batch_dependent(digits_repo) else 1e-4, rtol=1e-4)


def test_async_client(digits_server, digits_validation):
    images, _ = digits_validation

    async def main():
        async with AsyncClient(digits_server.grpc_url) as client:
            await client.wait_until_ready("digits", timeout=30)
            return await asyncio.gather(*(client.infer("digits", {"image": images[i : i + 4]}) for i in range(0, 40, 4)))

    outs = asyncio.run(main())
    assert len(outs) == 10 and all(o["logits"].shape == (4, 10) for o in outs)


def test_client_rejects_bad_input_before_sending_and_server_stays_up(digits_server, digits_validation):
    images, _ = digits_validation
    with Client(digits_server.grpc_url) as client:
        with pytest.raises(InputError, match="input 'image': dtype float64"):
            client.infer("digits", {"image": images[:2].astype(np.float64)})
        with pytest.raises(InputError, match="batch size 65 exceeds max_batch_size 64"):
            client.infer("digits", {"image": np.zeros((65, 64), np.float32)})
        with pytest.raises(ModelNotFound, match="'no_such_model'"):
            client.infer("no_such_model", {"image": images[:2]})
        with pytest.raises(InputError, match="has no output 'probs'"):
            client.infer("digits", {"image": images[:2]}, outputs=["probs"])
        assert client.infer("digits", {"image": images[:2]})["logits"].shape == (2, 10)


def test_server_side_rejection_of_a_malformed_request(digits_server, digits_validation):
    """A request the client library would refuse, sent raw: the server names the problem and keeps serving."""
    raw = grpcclient.InferenceServerClient(digits_server.grpc_url)
    try:
        bad = grpcclient.InferInput("image", [2, 63], "FP32")
        bad.set_data_from_numpy(np.zeros((2, 63), np.float32))
        with pytest.raises(Exception, match="image"):
            raw.infer("digits", [bad])
    finally:
        raw.close()
    with Client(digits_server.grpc_url) as client:
        assert client.infer("digits", {"image": digits_validation[0][:3]})["logits"].shape == (3, 10)


def test_model_states_name_why_a_model_is_unavailable(digits_server):
    states = {s.name: s for s in digits_server.model_states()}
    assert states["digits"].state == "READY" and states["digits_ort"].state == "READY"
    assert states["digits_onnx_fp32"].state == "UNAVAILABLE"
    assert "onnxruntime" in states["digits_onnx_fp32"].reason


def test_timeout_is_reported(digits_server, digits_validation):
    with Client(digits_server.grpc_url, timeout=1e-6, retries=0) as client, pytest.raises(Exception) as err:
        client.infer("digits", {"image": digits_validation[0][:1]})
    assert type(err.value).__name__ in ("DeadlineExceeded", "EndpointsUnavailable")


def test_unavailable_model_is_named(digits_server):
    with (
        Client(digits_server.grpc_url) as client,
        pytest.raises(ModelNotFound, match="'digits_onnx_fp32' has no available versions"),
    ):
        client.infer("digits_onnx_fp32", {"image": np.zeros((1, 64), np.float32)}, timeout=5)
