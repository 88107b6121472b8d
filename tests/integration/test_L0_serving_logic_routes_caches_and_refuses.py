"""The serving logic of the public model on the real local tritonserver, with a real redis-server: the router
over its rungs (absent, dying, failing), requests' own errors as INVALID_ARGUMENT, the response cache (shared,
authenticated, expiring, bypassed), and the MiniLM text service."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from helpers import MINILM, digits_spec_copy, metric, python_stand_in, scaled

from tritonforge.builder.pipeline import build
from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.client import Client, InferenceFailed
from tritonforge.perf.triton_stats import model_stats
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer
from tritonforge.serving import metric_names as m
from tritonforge.serving.codec import cache_key
from tritonforge.serving.settings import BlsRungSettings, PublicSettings
from tritonforge.testing.load import SteadyLoad
from tritonforge.testing.redis import RedisServer

SECRET = {"TRITONFORGE_CACHE_SECRET": "test-replicas-secret"}
IMAGE = {"name": "image", "dtype": "float32", "shape": [64], "range": [0.0, 1.0]}
LOGITS = {"name": "logits", "dtype": "float32", "shape": [10]}


def _digits(tmp_path_factory, name: str, **serving) -> Path:
    tmp = tmp_path_factory.mktemp(name)
    base = {"dynamic_batching": {"max_queue_delay_us": 200}, "warmup": {"batch_sizes": [1]}}
    spec = digits_spec_copy(
        tmp / "spec", variants=[{"kind": "onnx_fp16"}], serving=base | serving, inputs=[IMAGE], outputs=[LOGITS]
    )
    repo = tmp / "model_repository"
    build(spec, repo)
    return repo


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 64), dtype=np.float32)


def _settings(repo: Path) -> PublicSettings:
    settings = Repository(repo).settings("digits")
    assert isinstance(settings, PublicSettings)
    return settings


def _first_rung(repo: Path) -> str:
    first = _settings(repo).rungs[0]
    assert isinstance(first, BlsRungSettings)
    return first.model


@pytest.fixture(scope="module")
def redis_repo(tmp_path_factory, digits_spec):
    """digits with a Redis cache, and the in-process runner pinned to FP16 so FP32 is the last rung."""
    return _digits(
        tmp_path_factory,
        "redis_repo",
        cache={"kind": "redis", "ttl_s": 300},
        router={"cpu_variant": "onnx_fp16", "breaker_seconds": 1.0},
        max_request_bytes=8192,
    )


@pytest.fixture(scope="module")
def redis_triton(redis_repo, redis_server):
    server = LocalTritonServer(redis_repo, env={"TRITONFORGE_REDIS_URL": redis_server.url, **SECRET}).start()
    yield server
    server.stop()
    server.cleanup()


# ---- the router ---------------------------------------------------------------------------------------
def test_native_rungs_not_loaded_here_are_skipped_not_failed(redis_triton, redis_repo):
    rungs = [r.model if isinstance(r, BlsRungSettings) else r.name for r in _settings(redis_repo).rungs]
    assert rungs[-2:] == ["in_process:digits_onnx_fp16", "in_process:digits_onnx_fp32"]
    assert set(rungs[:-2]) == {"digits_onnx_fp32", "digits_onnx_fp16", "digits_onnx_fp32_ftz"}  # ftz: digits' subnormals
    url = redis_triton.metrics_url
    before = metric(url, m.ROUTER_REQUESTS, variant="in_process:digits_onnx_fp16")  # warm-up counts
    with Client(redis_triton.grpc_url) as client:
        for i in range(5):
            client.infer("digits", {"image": _image(i)})
    assert metric(url, m.ROUTER_REQUESTS, variant="in_process:digits_onnx_fp16") == before + 5
    for native in rungs[:-2]:
        assert metric(url, m.ROUTER_RUNG_ABSENT, variant=native) == 1
        assert metric(url, m.ROUTER_BREAKER_OPEN, variant=native) == 0
        assert metric(url, m.ROUTER_FAILURES, variant=native) == 0
    assert metric(url, m.ROUTER_FALLBACKS) == 0
    log = redis_triton.log_path.read_text()
    assert log.count("rung digits_onnx_fp16 not loaded") == 1  # once, not per request


def _wait_loaded(server: LocalTritonServer, rung: str, timeout: float = 10.0) -> None:
    """The public model's warm-up runs before the server is ready, when no rung answers BLS yet; it probes
    them again a second after it starts."""
    deadline = time.monotonic() + timeout
    while metric(server.metrics_url, m.ROUTER_RUNG_ABSENT, variant=rung) != 0:
        assert time.monotonic() < deadline, f"{rung} never seen loaded"


def test_a_rung_unloaded_mid_run_fails_no_request(tmp_path_factory, digits_spec, reliability):
    """The first rung (a Python-backend stand-in for the onnxruntime backend, which the local server lacks)
    serves, is unloaded under load, and comes back."""
    repo = _digits(
        tmp_path_factory, "unload", router={"cpu_variant": "onnx_fp16", "breaker_seconds": 1.0}, cache={"kind": "none"}
    )
    first = _first_rung(repo)
    python_stand_in(repo, first)
    with LocalTritonServer(repo) as server, Client(server.grpc_url) as client:
        _wait_loaded(server, first)
        admin = grpcclient.InferenceServerClient(server.grpc_url)
        with SteadyLoad(
            lambda x: client.infer("digits", x), [{"image": _image(10_000 + i)} for i in range(300)], threads=4
        ) as load:
            load.wait_for(50)
            assert metric(server.metrics_url, m.ROUTER_REQUESTS, variant=first) > 0
            admin.unload_model(first)
            load.wait_for(load.record.requests + scaled(150))
            assert metric(server.metrics_url, m.ROUTER_RUNG_ABSENT, variant=first) == 1
            before = metric(server.metrics_url, m.ROUTER_REQUESTS, variant=first)
            admin.load_model(first)
            time.sleep(1.5)  # the public model probes absent rungs every breaker_seconds, off the request path
            load.wait_for(load.record.requests + 100)
            back = metric(server.metrics_url, m.ROUTER_REQUESTS, variant=first)
        admin.close()
        reliability(
            "fallback: first rung unloaded and loaded again under load",
            "4 threads on digits; the first rung unloaded, then loaded",
            load.record.requests,
            len(load.record.errors),
            0,
            "the next rung answered meanwhile; the rung served again once loaded; no failure counted",
        )
        assert load.record.errors == []
        assert back > before, "the rung serves again once it is loaded"
        assert metric(server.metrics_url, m.ROUTER_FAILURES, variant=first) == 0


def test_a_rung_that_fails_while_loaded_opens_its_breaker_and_the_gauge_reads_zero_after(tmp_path_factory, digits_spec):
    repo = _digits(tmp_path_factory, "failing", router={"breaker_failures": 2, "breaker_seconds": 1.0})
    first = _first_rung(repo)
    python_stand_in(repo, first, failing=True)
    with LocalTritonServer(repo) as server, Client(server.grpc_url) as client:
        _wait_loaded(server, first)
        for i in range(6):
            client.infer("digits", {"image": _image(20_000 + i)})  # answered by the next rung
        url = server.metrics_url
        assert metric(url, m.ROUTER_FAILURES, variant=first) == 2  # then skipped
        assert metric(url, m.ROUTER_BREAKER_OPEN, variant=first) == 1
        assert metric(url, m.ROUTER_FALLBACKS) == 6
        time.sleep(1.3)
        assert metric(url, m.ROUTER_BREAKER_OPEN, variant=first) == 0  # with no request since
        assert server.log_path.read_text().count(f"rung {first} breaker open") == 1


def test_bad_requests_fail_alone_as_invalid_argument_and_never_open_a_breaker(redis_triton, reliability):
    good = [_image(30_000 + i) for i in range(24)]
    nan, out_of_range = _image(0), _image(1)
    nan[0, 3] = np.nan
    out_of_range[0, 5] = 7.0
    url = redis_triton.metrics_url
    failures = metric(url, m.ROUTER_FAILURES)
    with Client(redis_triton.grpc_url, reject_nonfinite=False) as client, ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(client.infer, "digits", {"image": x}) for x in good[:12]]
        bad = [pool.submit(client.infer, "digits", {"image": x}) for x in (nan, out_of_range) * 3]
        futures += [pool.submit(client.infer, "digits", {"image": x}) for x in good[12:]]
        answered = sum(f.result()["logits"].shape == (1, 10) for f in futures)
        reliability(
            "bad requests among good ones",
            "6 bad requests (NaN, out of range) among 24 good ones, 12 in flight",
            30,
            len(good) - answered,
            0,
            "each bad one INVALID_ARGUMENT alone; no rung failure counted, no breaker opened",
        )
        assert answered == len(good)
        for f, expect in zip(bad, ["input 'image' holds 1 NaN or Inf", "outside its range [0, 1]"] * 3, strict=True):
            with pytest.raises(InferenceFailed, match=expect.replace("[", r"\[").replace("]", r"\]")) as err:
                f.result()
            assert err.value.status == "StatusCode.INVALID_ARGUMENT"
    assert metric(url, m.ROUTER_FAILURES) == failures
    assert metric(url, m.ROUTER_REJECTED) >= 6


def test_a_request_over_the_size_limit_is_refused_before_any_compute(redis_triton):
    """64 images (16 KiB) are within max_batch_size but over this build's serving.max_request_bytes (8 KiB)."""
    url = redis_triton.metrics_url
    computed = metric(url, m.ROUTER_REQUESTS)
    with Client(redis_triton.grpc_url) as client:
        with pytest.raises(InferenceFailed, match=r"request of 16384 bytes exceeds the limit of 8192 bytes") as err:
            client.infer("digits", {"image": np.zeros((64, 64), np.float32)})
        assert err.value.status == "StatusCode.INVALID_ARGUMENT"
        assert client.infer("digits", {"image": np.zeros((32, 64), np.float32)})["logits"].shape == (32, 10)
    assert metric(url, m.ROUTER_REQUESTS) == computed + 1


# ---- the response cache -------------------------------------------------------------------------------
def test_second_identical_request_is_a_hit_with_identical_bytes(redis_triton):
    x = _image(40_000)
    url = redis_triton.metrics_url
    with Client(redis_triton.grpc_url) as client:
        hits = metric(url, m.CACHE_HITS)
        first = client.infer("digits", {"image": x})["logits"]
        assert metric(url, m.CACHE_HITS) == hits
        second = client.infer("digits", {"image": x})["logits"]
    assert metric(url, m.CACHE_HITS) == hits + 1
    assert first.tobytes() == second.tobytes()


def _wait_stored(redis_server, before: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_server.client().dbsize() > before:
            return True
        time.sleep(0.02)
    return False


def test_cache_entries_are_shared_between_servers(redis_triton, redis_repo, redis_server):
    x = _image(50_000)
    with LocalTritonServer(redis_repo, env={"TRITONFORGE_REDIS_URL": redis_server.url, **SECRET}) as other:
        with Client(redis_triton.grpc_url) as a, Client(other.grpc_url) as b:
            stored = redis_server.client().dbsize()
            first = a.infer("digits", {"image": x})["logits"]
            assert _wait_stored(redis_server, stored)
            second = b.infer("digits", {"image": x})["logits"]
        assert metric(other.metrics_url, m.CACHE_HITS) == 1
        assert metric(other.metrics_url, m.CACHE_MISSES) == 0
    assert first.tobytes() == second.tobytes()


def test_a_value_replayed_under_another_input_s_key_is_a_miss_and_the_model_answers(redis_triton, redis_repo, redis_server):
    """Keys are computable from the model config (model version, key prefix): an attacker who can write to the
    Redis copies a stored answer to the key of another input. It is refused, and that input gets its own answer."""
    s = _settings(redis_repo)
    x, y = _image(55_000), _image(55_001)
    with Client(redis_triton.grpc_url) as client:
        stored = redis_server.client().dbsize()
        answer_x = client.infer("digits", {"image": x})["logits"]
        assert _wait_stored(redis_server, stored)
        key_x = cache_key("digits", s.cache_version, {"image": x}, s.cache.key_prefix)
        key_y = cache_key("digits", s.cache_version, {"image": y}, s.cache.key_prefix)
        r = redis_server.client()
        assert r.get(key_x) is not None
        r.set(key_y, r.get(key_x))
        rejected = metric(redis_triton.metrics_url, m.CACHE_REJECTED, reason="authentication")
        answer_y = client.infer("digits", {"image": y})["logits"]
    direct = OrtModel(Repository(redis_repo).runner_file("digits"), ["logits"]).run({"image": y})["logits"]
    np.testing.assert_allclose(answer_y, direct, atol=1e-5)
    assert not np.allclose(answer_y, answer_x)
    assert metric(redis_triton.metrics_url, m.CACHE_REJECTED, reason="authentication") == rejected + 1


def test_a_redis_cache_without_the_replicas_secret_refuses_to_load(redis_repo, redis_server):
    with LocalTritonServer(
        redis_repo, load_models=["digits"], env={"TRITONFORGE_REDIS_URL": redis_server.url, "TRITONFORGE_CACHE_SECRET": ""}
    ) as server:
        state = {s.name: s for s in server.model_states()}["digits"]
    assert state.state == "UNAVAILABLE"
    assert "needs the replicas' shared secret in $TRITONFORGE_CACHE_SECRET" in state.reason


def test_ttl_expiry(tmp_path_factory, redis_server):
    repo = _digits(tmp_path_factory, "ttl", cache={"kind": "redis", "ttl_s": 1.0, "key_prefix": "ttl-test:"})
    x = _image(60_000)
    with (
        LocalTritonServer(repo, env={"TRITONFORGE_REDIS_URL": redis_server.url, **SECRET}) as server,
        Client(server.grpc_url) as client,
    ):
        stored = redis_server.client().dbsize()
        client.infer("digits", {"image": x})
        assert _wait_stored(redis_server, stored)
        keys = redis_server.client().keys("ttl-test:*")
        assert len(keys) == 1 and 0 < redis_server.client().pttl(keys[0]) <= 1000
        client.infer("digits", {"image": x})
        assert metric(server.metrics_url, m.CACHE_HITS) == 1
        time.sleep(1.3)
        client.infer("digits", {"image": x})
        assert metric(server.metrics_url, m.CACHE_HITS) == 1
        assert metric(server.metrics_url, m.CACHE_MISSES) == 2


def test_redis_killed_mid_load_fails_no_request(redis_repo, reliability):
    with (
        RedisServer() as redis,
        LocalTritonServer(redis_repo, env={"TRITONFORGE_REDIS_URL": redis.url, **SECRET}) as server,
        Client(server.grpc_url) as client,
    ):
        n = scaled(400)
        inputs = [{"image": _image(70_000 + i % 50)} for i in range(n)]  # repeats: hits and misses
        with SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=8, max_requests=n) as load:
            load.wait_for(n // 3)
            redis.kill()
            load.wait_for(n)
        reliability(
            "Redis killed mid-load",
            "8 threads, repeated inputs through the Redis cache; redis-server SIGKILLed after a third",
            load.record.requests,
            len(load.record.errors),
            0,
            "reads bypassed, logged once",
        )
        assert load.record.errors == [] and load.record.requests == n
        assert metric(server.metrics_url, m.CACHE_ERRORS) >= 1
        assert metric(server.metrics_url, m.CACHE_HITS) >= 1
        assert server.log_path.read_text().count("cache reads bypassed") == 1


def test_tritons_own_response_cache(tmp_path_factory):
    repo = _digits(tmp_path_factory, "triton_cache", cache={"kind": "triton"})
    x = _image(80_000)
    with LocalTritonServer(repo, cache_size=16 * 2**20) as server, Client(server.grpc_url) as client:
        a = client.infer("digits", {"image": x})["logits"]
        b = client.infer("digits", {"image": x})["logits"]
        assert a.tobytes() == b.tobytes()
        assert metric(server.metrics_url, "nv_cache_num_hits_per_model", model="digits") == 1
        assert _settings(repo).cache is None


# ---- the MiniLM text-embedding service ----------------------------------------------------------------
def _distinct_texts(n: int) -> list[str]:
    import sys

    sys.path.insert(0, str(MINILM))
    import minilm_data

    s = minilm_data.sentences()
    k = len(s)
    return [f"{s[i % k]} {s[(i % k + i // k + 1) % k]}" for i in range(n)]  # distinct pairs for n < k * k


def _direct(repo: Path, texts: list[str]) -> np.ndarray:
    """The same computation in-process: tokenizer + the ONNX file the in-process runner serves, texts of one
    token length batched together (no padding, so each row is what that text alone computes)."""
    import minilm_data

    model = OrtModel(Repository(repo).runner_file("minilm"), ["embedding"])
    by_length: dict[int, list[int]] = {}
    for i, t in enumerate(texts):
        by_length.setdefault(len(minilm_data.encode([t])["input_ids"][0]), []).append(i)
    out = np.zeros((len(texts), 384), np.float32)
    for rows in by_length.values():
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            out[chunk] = model.run(minilm_data.encode([texts[i] for i in chunk]))["embedding"]
    return out


def test_text_in_normalised_embedding_out(service_repo, service_server):
    texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply."]
    with Client(service_server.grpc_url) as client:
        emb = client.infer("minilm", {"text": np.array([[t] for t in texts], dtype=object)})["embedding"]
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # related sentences are closer than unrelated ones
    np.testing.assert_allclose(emb, _direct(service_repo, texts), atol=2e-5)


def test_repeated_text_is_answered_from_the_cache_without_compute(service_server):
    text = np.array([["A repeated sentence is computed once."]], dtype=object)
    url = service_server.metrics_url
    with Client(service_server.grpc_url) as client:
        first = client.infer("minilm", {"text": text})["embedding"]
        computed = metric(url, m.ROUTER_REQUESTS, model="minilm")
        again = client.infer("minilm", {"text": text})["embedding"]
    assert again.tobytes() == first.tobytes()
    assert metric(url, m.ROUTER_REQUESTS, model="minilm") == computed


def test_text_errors_are_named_and_invalid_argument(service_server):
    with Client(service_server.grpc_url) as client:
        with pytest.raises(InferenceFailed, match="text 0 of input 'text' is 1048576 bytes; the limit is 65536") as e:
            client.infer("minilm", {"text": np.array([["x" * 2**20]], dtype=object)})
        assert e.value.status == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceFailed, match="not valid UTF-8") as e:
            client.infer("minilm", {"text": np.array([[b"\xff\xfe"]], dtype=object)})
        assert e.value.status == "StatusCode.INVALID_ARGUMENT"
        assert client.infer("minilm", {"text": np.array([["still serving"]], dtype=object)})["embedding"].shape == (1, 384)


def test_correctness_under_load_no_cross_request_mixups(service_repo, service_server, reliability):
    """2,000 distinct texts at concurrency 32: each answer is its own input's embedding."""
    n = scaled(2000)
    texts = _distinct_texts(n)
    assert len(set(texts)) == n
    with Client(service_server.grpc_url, timeout=120) as client, ThreadPoolExecutor(32) as pool:
        served = list(pool.map(lambda t: client.infer("minilm", {"text": np.array([[t]], dtype=object)})["embedding"][0], texts))
    served = np.stack(served)
    direct = _direct(service_repo, texts)
    diff = np.abs(served - direct).max(axis=1)
    nearest = (served @ direct.T).argmax(axis=1)  # each answer is closest to its own input's embedding
    reliability(
        "text service under load",
        f"{n} distinct texts through the public text entry (tokenizer, cache miss, router, FP32 runner), 32 in flight",
        n,
        0,
        int(((diff >= 1e-4) | (nearest != np.arange(n))).sum()),
        f"each answer its own text's embedding: largest difference {diff.max():.2g}",
    )
    assert diff.max() < 1e-4, f"largest difference {diff.max():.3g} at text {int(diff.argmax())}"
    assert (nearest == np.arange(len(texts))).all()
    admin = grpcclient.InferenceServerClient(service_server.grpc_url)
    stats = model_stats(admin, "minilm")
    admin.close()
    assert stats.execution_count < stats.inference_count  # batches formed under load


def test_repository_shares_no_file_with_the_package_or_the_spec(service_repo):
    """Every file of a built repository is its own copy: hard links may join files inside the repository, never a
    repository file to the installed serving sources or to an input such as the tokenizer (editing a deployed
    repository must not edit the package, nor the other way round)."""
    from collections import Counter

    files = [p for p in service_repo.rglob("*") if p.is_file() and not p.is_symlink()]
    inodes = Counter((p.stat().st_dev, p.stat().st_ino) for p in files)
    shared = [str(p.relative_to(service_repo)) for p in files if p.stat().st_nlink > inodes[(p.stat().st_dev, p.stat().st_ino)]]
    assert shared == []
    assert any(p.name == "tokenizer.json" for p in files) and any(p.name == "metrics.py" for p in files)


def test_replicas_with_different_secrets_say_so_once_in_the_log(redis_triton, redis_repo, redis_server, reliability):
    """Two replicas sharing a Redis but not the secret: each value one writes is a miss for the other. That used to
    show only as a counter; the replica that rejects them says why in its log, once."""
    images = [_image(60_000 + i) for i in range(scaled(20))]
    other_env = {"TRITONFORGE_REDIS_URL": redis_server.url, "TRITONFORGE_CACHE_SECRET": "another-secret"}
    with LocalTritonServer(redis_repo, env=other_env) as other:
        with Client(redis_triton.grpc_url) as a, Client(other.grpc_url) as b:
            for x in images:
                stored = redis_server.client().dbsize()
                a.infer("digits", {"image": x})
                assert _wait_stored(redis_server, stored)
                b.infer("digits", {"image": x})
        rejected = metric(other.metrics_url, m.CACHE_REJECTED, reason="authentication")
        time.sleep(1.0)  # the log line is written off the request path
        lines = [
            line for line in other.log_path.read_text(errors="replace").splitlines() if "cache values fail authentication" in line
        ]
    assert rejected == len(images)
    assert len(lines) == 1 and "do the replicas share TRITONFORGE_CACHE_SECRET?" in lines[0], lines
    reliability(
        "replicas with different secrets",
        "two replicas sharing a Redis with different cache secrets; each value one writes read by the other",
        requests=2 * len(images),
        failed=0,
        notes=f"{rejected:.0f} values refused as misses (each answer computed); one log line says why",
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_the_memory_cache_bound_is_the_memory_it_uses(tmp_path_factory, digits_spec, reliability):
    """A 2 MiB memory cache filled far past its bound with distinct answers: the serving stub's resident memory
    grows by about the bound, not by what the values alone would let it hold (it grew 3.6x before entries
    counted their keys and overhead)."""
    from tritonforge.testing.faults import stub_pids
    from tritonforge.testing.load import SteadyLoad

    bound = 2 * 2**20
    repo = _digits(tmp_path_factory, "memory_bound", cache={"kind": "memory", "memory_max_bytes": bound})
    rng = np.random.default_rng(7)
    inputs = [{"image": rng.random((1, 64), dtype=np.float32)} for _ in range(26_000)]
    with LocalTritonServer(repo) as server, Client(server.grpc_url, timeout=30) as client:
        (stub,) = stub_pids(server, "digits")
        with SteadyLoad(lambda x: client.infer("digits", x), inputs[:2_000], threads=4, max_requests=2_000) as load:
            load.wait_for(2_000)
        before = _rss_mb(stub)
        with SteadyLoad(lambda x: client.infer("digits", x), inputs[2_000:], threads=4, max_requests=24_000) as load:
            load.wait_for(24_000)
        grown = _rss_mb(stub) - before
        stored = metric(server.metrics_url, m.CACHE_STORED_BYTES)
    assert load.record.errors == []
    assert grown <= 1.5 * bound / 2**20 + 1.0, f"resident memory grew {grown:.1f} MiB for a {bound / 2**20:.0f} MiB bound"
    reliability(
        "memory cache bound",
        f"26,000 distinct digits requests into a {bound // 2**20} MiB memory cache",
        requests=26_000,
        failed=0,
        notes=f"the serving stub grew {grown:.1f} MiB after warm-up "
        f"({stored / 2**20:.1f} MiB of values stored in all, evicted to the bound)",
    )
