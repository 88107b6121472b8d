"""The response cache's pieces without Triton: key, value codec, stores (a real redis-server), breaker."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tritonforge" / "serving"))

from tf_breaker import CircuitBreaker  # noqa: E402
from tf_codec import cache_key, decode, encode  # noqa: E402
from tf_store import MemoryStore, RedisStore, StoreUnavailable, make_store  # noqa: E402


def test_key_covers_name_version_dtype_shape_and_bytes():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = cache_key("m", "v1", {"x": x})
    assert base == cache_key("m", "v1", {"x": x.copy()})
    assert base != cache_key("m", "v2", {"x": x})
    assert base != cache_key("n", "v1", {"x": x})
    assert base != cache_key("m", "v1", {"y": x})
    assert base != cache_key("m", "v1", {"x": x.reshape(3, 2)})  # same bytes, other shape
    assert base != cache_key("m", "v1", {"x": x.view(np.int32)})  # same bytes, other dtype
    assert base != cache_key("m", "v1", {"x": x + 1})
    assert cache_key("m", "v1", {"x": x}, prefix="p:").startswith("p:")
    texts = np.array([[b"ab"], [b"c"]], dtype=object)
    assert cache_key("m", "1", {"t": texts}) != cache_key("m", "1", {"t": np.array([[b"a"], [b"bc"]], dtype=object)})


def test_codec_round_trip_is_exact():
    outputs = {"emb": np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32),
               "ids": np.arange(5, dtype=np.int64), "flag": np.array([True, False]),
               "names": np.array([b"x", b"yz"], dtype=object)}
    value = encode(outputs, level=6)
    assert value.startswith(b"TFC1")
    back = decode(value)
    for k, v in outputs.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert back[k].tobytes() == v.tobytes() if v.dtype != object else list(back[k]) == list(v)
    assert len(encode({"z": np.zeros((64, 384), np.float32)}, 6)) < 64 * 384 * 4 / 50  # zlib works


@pytest.mark.parametrize("bad", [b"", b"junk", b"TFC1not-zlib", b"TFC1" + __import__("zlib").compress(b"\x05\x00\x00\x00[{}]")])
def test_codec_refuses_malformed_values(bad):
    with pytest.raises(Exception):
        decode(bad)


def test_codec_refuses_object_dtypes_smuggled_in_header():
    import json
    import struct
    import zlib

    head = json.dumps([{"name": "x", "dtype": "|O", "shape": [1], "nbytes": 8}]).encode()
    value = b"TFC1" + zlib.compress(struct.pack("<I", len(head)) + head + b"\0" * 8)
    with pytest.raises(ValueError, match="refusing dtype"):
        decode(value)


def test_memory_store_lru_bounded_in_bytes_and_ttl():
    now = [0.0]
    store = MemoryStore(max_bytes=10, ttl_s=5, clock=lambda: now[0])
    store.set_many([("a", b"1234"), ("b", b"5678")])
    assert store.get_many(["a", "b", "c"]) == [b"1234", b"5678", None]
    store.set_many([("c", b"90ab")])  # 12 bytes > 10: least recently used ('a') goes
    assert store.get_many(["a", "b", "c"]) == [None, b"5678", b"90ab"]
    assert store.bytes == 8
    store.set_many([("huge", b"x" * 11)])  # larger than the whole cache: not stored
    assert store.get_many(["huge"]) == [None]
    now[0] = 5.1
    assert store.get_many(["b", "c"]) == [None, None] and store.bytes == 0


@pytest.mark.integration  # starts redis-server
def test_redis_store_ttl_and_sharing(redis_server):
    a = RedisStore(redis_server.url, ttl_s=60)
    b = RedisStore(redis_server.url, ttl_s=60)
    a.set_many([("tf:test:k1", b"v1")])
    assert b.get_many(["tf:test:k1", "tf:test:nothing"]) == [b"v1", None]
    ttl_ms = redis_server.client().pttl("tf:test:k1")
    assert 0 < ttl_ms <= 60_000


def test_redis_store_down_raises_unavailable_then_bypasses():
    from tritonforge.server.process import free_ports

    store = RedisStore(f"redis://127.0.0.1:{free_ports(1)[0]}/0", socket_timeout_ms=50, bypass_seconds=60)
    with pytest.raises(StoreUnavailable, match="ConnectionError"):
        store.get_many(["k"])
    with pytest.raises(StoreUnavailable, match="bypassed"):
        store.set_many([("k", b"v")])


@pytest.mark.integration  # starts redis-server
def test_make_store_prefers_environment_url(monkeypatch, redis_server):
    monkeypatch.setenv("MY_REDIS", redis_server.url)
    store = make_store({"backend": "redis", "redis_url": "redis://nowhere:1/0", "redis_url_env": "MY_REDIS"})
    assert store.kind == "redis" and store.url == redis_server.url
    assert make_store({"backend": "memory"}).kind == "memory"
    monkeypatch.delenv("MY_REDIS")
    assert make_store({"backend": "redis", "redis_url": "", "redis_url_env": "MY_REDIS"}).kind == "memory"


def test_breaker_opens_probes_and_closes():
    now = [0.0]
    b = CircuitBreaker(failures=2, seconds=10, clock=lambda: now[0])
    b.failure()
    assert b.allow() and not b.is_open
    b.failure()
    assert b.is_open and not b.allow()
    now[0] = 10.0
    assert b.allow()  # half-open probe
    b.failure()
    assert not b.allow() and b.opened == 2
    now[0] = 20.0
    b.success()
    assert b.allow() and not b.is_open
    b.failure(unavailable=True)
    assert b.is_open
