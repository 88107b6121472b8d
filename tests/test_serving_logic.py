"""Serving logic on the real local tritonserver with a real redis-server: fallback router, response cache,
ensembles and the MiniLM text-embedding service."""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonforge.build.ort_runtime import OrtModel
from tritonforge.build.pipeline import build
from tritonforge.build.serving_graph import METRICS_LAG_S
from tritonforge.server.process import LocalTritonServer
from tritonforge.client import Client, InferenceFailed

from conftest import MINILM, digits_spec_copy
from benchmarks.reliability import wait_stored
from tritonforge.perf.triton_stats import model_stats, stats_of
from tritonforge.repository.reader import Repository

pytestmark = pytest.mark.integration


def metrics(server: LocalTritonServer) -> dict[str, float]:
    """tritonforge_* and nv_cache_* samples from /metrics, keyed by the full sample name with labels, read once
    the router's and cache's deferred counters have been sent."""
    time.sleep(METRICS_LAG_S)
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("tritonforge_", "nv_cache_")):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def metric(server: LocalTritonServer, name: str, **labels: str) -> float:
    total = 0.0
    for key, value in metrics(server).items():
        m = re.match(r"([a-z_]+)\{(.*)\}", key)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += value
    return total


def _digits(tmp_path_factory, name: str, **serving) -> Path:
    tmp = tmp_path_factory.mktemp(name)
    base = {"dynamic_batching": {"preferred_batch_sizes": [16, 64], "max_queue_delay_us": 200},
            "warmup": {"batch_sizes": [1]}}
    spec = digits_spec_copy(tmp / "spec", variants=[{"kind": "onnx_fp16"}], serving=base | serving)
    repo = tmp / "model_repository"
    build(spec, repo)
    return repo


@pytest.fixture(scope="module")
def redis_repo(tmp_path_factory, digits_spec):
    """digits with a Redis cache, and the in-process runner pinned to FP16 so an FP32 runner is the last rung."""
    return _digits(tmp_path_factory, "redis_repo", cache={"kind": "redis", "ttl_s": 300},
                   router={"cpu_variant": "onnx_fp16", "breaker_seconds": 1.0})


@pytest.fixture(scope="module")
def redis_triton(redis_repo, redis_server):
    server = LocalTritonServer(redis_repo, env={"TRITONFORGE_REDIS_URL": redis_server.url}).start()
    yield server
    server.stop()
    server.cleanup()


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 64), dtype=np.float32)


# ---- fallback router ----------------------------------------------------------------------------------
def test_router_order_and_local_fallthrough(redis_triton, redis_repo):
    from tritonforge.repository.config import read_config

    rungs = read_config(redis_repo / "digits_router" / "config.pbtxt").parameters["rungs"].string_value
    order = [m for m in re.findall(r'"model":"([^"]+)"', rungs)]
    assert order[-2:] == ["digits_ort", "digits_ort_fp32"] and set(order[:-2]) == {"digits_onnx_fp32", "digits_onnx_fp16"}
    with Client(redis_triton.grpc_url) as client:
        client.infer("digits", {"image": _image(1)})
    # The onnxruntime backend is not in the local server: the router falls through to the in-process runner.
    assert metric(redis_triton, "tritonforge_router_requests_total", variant="digits_ort") >= 1
    assert metric(redis_triton, "tritonforge_router_breaker_open", variant="digits_onnx_fp32") == 1
    assert metric(redis_triton, "tritonforge_router_fallbacks_total") >= 1


def test_variant_unloaded_mid_run_requests_still_succeed(redis_repo, redis_server):
    with LocalTritonServer(redis_repo, env={"TRITONFORGE_REDIS_URL": redis_server.url}) as server, \
            Client(server.grpc_url) as client:
        admin = grpcclient.InferenceServerClient(server.grpc_url)
        failures, done = [], []

        def load(i: int) -> None:
            try:
                client.infer("digits", {"image": _image(10_000 + i)})  # distinct inputs: every one a cache miss
                done.append(i)
            except Exception as e:  # counted, then asserted to be none
                failures.append(repr(e))

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(load, i) for i in range(150)]
            while len(done) < 50:
                time.sleep(0.01)
            admin.unload_model("digits_ort")  # the rung serving everything so far goes away mid-run
            futures += [pool.submit(load, i) for i in range(150, 300)]
            for f in futures:
                f.result()
        assert failures == []
        assert metric(server, "tritonforge_router_requests_total", variant="digits_ort_fp32") > 0
        assert metric(server, "tritonforge_router_failures_total", variant="digits_ort") >= 1
        assert metric(server, "tritonforge_router_breaker_open", variant="digits_ort") == 1
        # Back again: after breaker_seconds the router probes it and returns to it.
        admin.load_model("digits_ort")
        before = metric(server, "tritonforge_router_requests_total", variant="digits_ort")
        time.sleep(1.2)
        for i in range(5):
            client.infer("digits", {"image": _image(20_000 + i)})
        assert metric(server, "tritonforge_router_requests_total", variant="digits_ort") > before
        admin.close()


def test_bad_request_fails_alone_inside_a_batch(redis_triton):
    good = [_image(30_000 + i) for i in range(24)]
    bad = _image(0)
    bad[0, 3] = np.inf
    with Client(redis_triton.grpc_url, reject_nonfinite=False) as client, ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(client.infer, "digits", {"image": x}) for x in good[:12]]
        bad_future = pool.submit(client.infer, "digits", {"image": bad})
        futures += [pool.submit(client.infer, "digits", {"image": x}) for x in good[12:]]
        assert all(f.result()["logits"].shape == (1, 10) for f in futures)
        with pytest.raises(InferenceFailed, match="input 'image' holds 1 NaN or Inf"):
            bad_future.result()


# ---- response cache -----------------------------------------------------------------------------------
def test_second_identical_request_is_a_hit_with_identical_bytes(redis_triton):
    x = _image(40_000)
    with Client(redis_triton.grpc_url) as client:
        hits = metric(redis_triton, "tritonforge_cache_hits_total")
        first = client.infer("digits", {"image": x})["logits"]
        assert metric(redis_triton, "tritonforge_cache_hits_total") == hits
        second = client.infer("digits", {"image": x})["logits"]
    assert metric(redis_triton, "tritonforge_cache_hits_total") == hits + 1
    assert first.tobytes() == second.tobytes()


def test_cache_entries_are_shared_between_servers(redis_triton, redis_repo, redis_server):
    x = _image(50_000)
    with LocalTritonServer(redis_repo, env={"TRITONFORGE_REDIS_URL": redis_server.url}) as other:
        with Client(redis_triton.grpc_url) as a, Client(other.grpc_url) as b:
            miss_a = metric(redis_triton, "tritonforge_cache_misses_total")
            stored = redis_server.client().dbsize()
            first = a.infer("digits", {"image": x})["logits"]
            assert metric(redis_triton, "tritonforge_cache_misses_total") == miss_a + 1
            assert wait_stored(redis_server.url, stored)
            second = b.infer("digits", {"image": x})["logits"]
        assert metric(other, "tritonforge_cache_hits_total") == 1
        assert metric(other, "tritonforge_cache_misses_total") == 0
    assert first.tobytes() == second.tobytes()


def test_ttl_expiry(tmp_path_factory, redis_server):
    repo = _digits(tmp_path_factory, "ttl", cache={"kind": "redis", "ttl_s": 1.0, "key_prefix": "ttl-test:"})
    x = _image(60_000)
    with LocalTritonServer(repo, env={"TRITONFORGE_REDIS_URL": redis_server.url}) as server, \
            Client(server.grpc_url) as client:
        stored = redis_server.client().dbsize()
        client.infer("digits", {"image": x})
        assert wait_stored(redis_server.url, stored)
        keys = redis_server.client().keys("ttl-test:*")
        assert len(keys) == 1 and 0 < redis_server.client().pttl(keys[0]) <= 1000
        client.infer("digits", {"image": x})
        assert metric(server, "tritonforge_cache_hits_total") == 1
        time.sleep(1.3)
        client.infer("digits", {"image": x})
        assert metric(server, "tritonforge_cache_hits_total") == 1
        assert metric(server, "tritonforge_cache_misses_total") == 2


def test_redis_killed_mid_load_fails_no_request(redis_repo):
    from tritonforge.testing.redis import RedisServer

    redis = RedisServer().start()
    try:
        with LocalTritonServer(redis_repo, env={"TRITONFORGE_REDIS_URL": redis.url}) as server, \
                Client(server.grpc_url) as client:
            failures, served = [], []

            def one(i: int) -> None:
                try:
                    client.infer("digits", {"image": _image(70_000 + i % 50)})  # repeats: hits and misses
                    served.append(i)
                except Exception as e:
                    failures.append(repr(e))

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(one, i) for i in range(400)]
                while len(served) < 150:
                    time.sleep(0.01)
                redis.kill()
                for f in futures:
                    f.result()
            assert failures == [] and len(served) == 400
            assert metric(server, "tritonforge_cache_errors_total") >= 1
            assert metric(server, "tritonforge_cache_hits_total") >= 1
    finally:
        redis.stop()


def test_tritons_own_response_cache(tmp_path_factory):
    repo = _digits(tmp_path_factory, "triton_cache", cache={"kind": "triton"})
    x = _image(80_000)
    with LocalTritonServer(repo, cache_size=16 * 2**20) as server, Client(server.grpc_url) as client:
        a = client.infer("digits", {"image": x})["logits"]
        b = client.infer("digits", {"image": x})["logits"]
        assert a.tobytes() == b.tobytes()
        assert metric(server, "nv_cache_num_hits_per_model", model="digits") == 1
        assert not (repo / "digits_cache").exists()


# ---- the MiniLM text-embedding service ----------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_service(service_repo, service_server):
    return service_repo, service_server


def _distinct_texts(n: int) -> list[str]:
    sys.path.insert(0, str(MINILM))
    import minilm_data

    s = minilm_data.sentences()
    k = len(s)
    return [f"{s[i % k]} {s[(i % k + i // k + 1) % k]}" for i in range(n)]  # distinct pairs for n < k * k


def _direct(repo: Path, texts: list[str]) -> np.ndarray:
    """The same computation in-process: tokenizer + the FP32 ONNX file, one text at a time."""
    import minilm_data

    model = OrtModel(Repository(repo).file("minilm_onnx_fp32"), ["embedding"])
    return np.concatenate([model.run(minilm_data.encode([t]))["embedding"] for t in texts])


def test_text_in_normalised_embedding_out(minilm_service):
    repo, server = minilm_service
    texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply."]
    with Client(server.grpc_url) as client:
        emb = client.infer("minilm", {"text": np.array([[t] for t in texts], dtype=object)})["embedding"]
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # related sentences are closer than unrelated ones
    np.testing.assert_allclose(emb, _direct(repo, texts), atol=2e-5)


def test_repeated_text_is_answered_before_the_tokenizer(minilm_service):
    """The cache sits in front of the tokenizer: a repeated text is a hit with identical bytes and never
    reaches the tokenizer or the router."""
    _, server = minilm_service
    text = np.array([["A repeated sentence is tokenised once."]], dtype=object)
    models = ["minilm_cache", "minilm_tokenizer", "minilm_router"]
    admin = grpcclient.InferenceServerClient(server.grpc_url)
    with Client(server.grpc_url) as client:
        first = client.infer("minilm", {"text": text})["embedding"]
        before = stats_of(admin, models)
        again = client.infer("minilm", {"text": text})["embedding"]
        answered = [(s - before[m]).inference_count for m, s in stats_of(admin, models).items()]
    admin.close()
    assert again.tobytes() == first.tobytes()
    assert answered == [1, 0, 0]  # cache, tokenizer, router


def test_text_errors_are_named(minilm_service):
    _, server = minilm_service
    with Client(server.grpc_url) as client:
        with pytest.raises(InferenceFailed, match="text 0 of input 'text' is 1048576 bytes; the limit is 65536"):
            client.infer("minilm", {"text": np.array([["x" * 2**20]], dtype=object)})
        with pytest.raises(InferenceFailed, match="not valid UTF-8") as failed:
            client.infer("minilm", {"text": np.array([[b"\xff\xfe"]], dtype=object)})
        assert "minilm_pipeline" not in str(failed.value)  # the client never sees the cache's internal target
        assert client.infer("minilm", {"text": np.array([["still serving"]], dtype=object)})["embedding"].shape == (1, 384)


def test_correctness_under_load_no_cross_request_mixups(minilm_service):
    """2,000 distinct texts at concurrency 32 through the ensemble: each answer is its own input's embedding."""
    repo, server = minilm_service
    texts = _distinct_texts(2000)
    assert len(set(texts)) == 2000
    with Client(server.grpc_url, timeout=120) as client, ThreadPoolExecutor(32) as pool:
        served = list(pool.map(lambda t: client.infer("minilm", {"text": np.array([[t]], dtype=object)})["embedding"][0],
                               texts))
    served = np.stack(served)
    direct = _direct(repo, texts)
    diff = np.abs(served - direct).max(axis=1)
    assert diff.max() < 1e-4, f"largest difference {diff.max():.3g} at text {int(diff.argmax())}"
    nearest = (served @ direct.T).argmax(axis=1)  # each answer is closest to its own input's embedding
    assert (nearest == np.arange(len(texts))).all()
    stats = model_stats(grpcclient.InferenceServerClient(server.grpc_url), "minilm_ort")
    assert stats.execution_count < stats.inference_count  # batches formed under load


def test_repository_shares_no_file_with_the_package_or_the_spec(service_repo):
    """Every file of a built repository is its own copy: hard links may join files inside the repository, never a
    repository file to the installed Python-model sources or to an input such as the tokenizer (editing a
    deployed repository must not edit the package, nor the other way round)."""
    from collections import Counter

    files = [p for p in service_repo.rglob("*") if p.is_file() and not p.is_symlink()]
    inodes = Counter((p.stat().st_dev, p.stat().st_ino) for p in files)
    shared = [str(p.relative_to(service_repo)) for p in files
              if p.stat().st_nlink > inodes[(p.stat().st_dev, p.stat().st_ino)]]
    assert shared == []
    assert any(p.name == "tokenizer.json" for p in files) and any(p.name == "tf_metrics.py" for p in files)
