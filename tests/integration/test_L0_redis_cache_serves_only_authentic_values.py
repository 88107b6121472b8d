"""The shared cache against a real redis-server that others can write to: nothing it reads is served unless the
replicas wrote it for that key, nothing huge is fetched, and a Redis that refuses writes still serves hits."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from tritonforge.serving import metric_names as m
from tritonforge.serving.cache import ResponseCache
from tritonforge.serving.codec import Codec
from tritonforge.serving.store import RedisStore
from tritonforge.serving.tally import Tally
from tritonforge.testing.ports import free_ports
from tritonforge.testing.redis import RedisServer

pytestmark = pytest.mark.integration

OUTPUTS = [("y", np.float32, (384,))]
SECRET = b"replicas-share-this-secret-00000"


def _store(url, states=None, max_value=4 * 2**20, bypass=60.0):
    on_state = (lambda *a: states.append(a[:2])) if states is not None else None
    return RedisStore(
        url,
        ttl_s=300,
        max_value_bytes=max_value,
        socket_timeout_ms=50.0,
        max_connections=4,
        bypass_seconds=bypass,
        on_state=on_state,
    )


def _cache(url, states=None, secret=SECRET, **kw):
    return ResponseCache(
        _store(url, states, **kw), Codec(secret, OUTPUTS, 16 * 2**20), "m", "v1", "tf:", 64, Tally(), {"model": "m"}
    )


def _answer(v):
    return {"y": np.full((1, 384), v, np.float32)}


def _stored(cache, key, answer):
    cache.put([(key, answer)])
    assert cache.flush()


def test_a_value_replayed_under_another_key_is_a_miss(redis_server, reliability):
    cache = _cache(redis_server.url)
    _stored(cache, "tf:k1", _answer(1.0))
    client = redis_server.client()
    client.set("tf:k2", client.get("tf:k1"))  # a valid value, copied to the key of another input
    got = cache.lookup(["tf:k2"], [1])
    reliability(
        "cache: value replayed under another key",
        "a replica's valid value copied to another input's key",
        1,
        0,
        int(got != [None]),
        "a miss (authentication), the model computes the answer",
    )
    assert got == [None]
    assert cache.tally.total(m.CACHE_REJECTED, reason="authentication") == 1
    assert cache.lookup(["tf:k1"], [1])[0]["y"][0, 0] == 1.0
    cache.close()


def test_a_value_forged_without_the_secret_is_a_miss(redis_server, reliability):
    forger = Codec(b"not-the-replicas-secret", OUTPUTS, 16 * 2**20)
    redis_server.client().set("tf:forged", forger.encode("tf:forged", _answer(666.0)))
    cache = _cache(redis_server.url)
    got = cache.lookup(["tf:forged"], [1])
    reliability(
        "cache: forged value",
        "a well-formed value written by someone without the replicas' secret",
        1,
        0,
        int(got != [None]),
        "a miss (authentication), never decoded",
    )
    assert got == [None]
    assert cache.tally.total(m.CACHE_REJECTED, reason="authentication") == 1
    cache.close()


def test_an_oversized_value_is_never_fetched_whole(redis_server, reliability):
    """64 MiB planted under a key: the store reads max_value_bytes + 1 of it and the lookup is a miss, in
    milliseconds and bounded memory (the old cache took 30 s and 8.3 GB for a 4 MiB bomb)."""
    redis_server.client().set("tf:huge", b"TFC2" + b"\0" * (64 * 2**20))
    cache = _cache(redis_server.url, max_value=1 << 20)
    tracemalloc.start()
    started = time.perf_counter()
    assert cache.lookup(["tf:huge"], [1]) == [None]
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    reliability(
        "cache: 64 MiB value",
        "64 MiB planted under a key (max_value_bytes 1 MiB)",
        1,
        0,
        int(peak >= 8 * 2**20 or elapsed >= 1.0),
        f"a miss in {elapsed * 1000:.0f} ms, peak {peak / 2**20:.1f} MiB allocated",
    )
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert elapsed < 1.0
    assert cache.tally.total(m.CACHE_REJECTED) == 1
    cache.close()


def test_a_zlib_bomb_without_the_secret_is_refused_before_it_is_inflated(redis_server, reliability):
    import zlib

    payload = zlib.compress(b"\0" * 2**30, 9)
    redis_server.client().set("tf:bomb", b"TFC2" + b"\0" * 32 + payload)
    cache = _cache(redis_server.url)
    started = time.perf_counter()
    got = cache.lookup(["tf:bomb"], [1])
    elapsed = time.perf_counter() - started
    reliability(
        "cache: zlib bomb",
        f"{len(payload) / 2**20:.1f} MiB of zlib that inflates to 1 GiB",
        1,
        0,
        int(got != [None] or elapsed >= 0.5),
        f"a miss in {elapsed * 1000:.0f} ms, never inflated",
    )
    assert got == [None] and elapsed < 0.5
    assert cache.tally.total(m.CACHE_REJECTED, reason="authentication") == 1
    cache.close()


def test_an_authentic_value_of_the_wrong_shape_is_a_miss(redis_server, reliability):
    cache = _cache(redis_server.url)
    _stored(cache, "tf:rows", {"y": np.zeros((3, 384), np.float32)})
    got = cache.lookup(["tf:rows"], [1])
    reliability(
        "cache: authentic value of the wrong shape",
        "3 rows stored under the key of a 1-row request",
        1,
        0,
        int(got != [None]),
        "a miss (header check)",
    )
    assert got == [None]  # a 1-row request never gets 3 rows back
    assert cache.tally.total(m.CACHE_REJECTED) == 1
    cache.close()


def test_a_full_redis_still_serves_hits_and_logs_once(reliability):
    """maxmemory with noeviction (a bare redis-server's policy) and memory over it: writes fail, reads go on."""
    with RedisServer(["--maxmemory-policy", "noeviction"]) as redis:
        states = []
        cache = _cache(redis.url, states)
        _stored(cache, "tf:early", _answer(7.0))
        admin = redis.client()
        admin.config_set("maxmemory", str(admin.info("memory")["used_memory"] // 2))  # full from now on
        for n in range(20):
            cache.put([(f"tf:late{n}", _answer(n))])
        cache.flush()
        assert ("writes", True) in states and states.count(("writes", True)) == 1  # once per change
        hits = [cache.lookup(["tf:early"], [1])[0] for _ in range(5)]
        reliability(
            "cache: full Redis (noeviction)",
            "maxmemory below use: 20 writes refused, then 5 lookups",
            5,
            sum(h is None for h in hits),
            0,
            f"writes breaker opened {states.count(('writes', True))} time(s) and logged once; reads kept serving hits",
        )
        for hit in hits:
            assert hit["y"][0, 0] == 7.0
        assert ("reads", True) not in states
        assert cache.tally.total(m.CACHE_HITS) == 5
        cache.close()


def test_a_redis_that_goes_away_is_bypassed_and_logged_once_per_change():
    redis = RedisServer().start()
    states = []
    cache = _cache(redis.url, states, bypass=0.2)
    _stored(cache, "tf:a", _answer(1.0))
    redis.kill()
    for _ in range(10):
        assert cache.lookup(["tf:a"], [1]) == [None]  # bypassed: a miss, never an error
    assert states.count(("reads", True)) == 1
    port = redis.port
    redis2 = RedisServer()
    redis2.port = port
    redis2.start()
    try:
        time.sleep(0.3)
        cache.lookup(["tf:a"], [1])
        assert states[-1] == ("reads", False)
    finally:
        cache.close()
        redis.stop()
        redis2.stop()


def test_an_unreachable_redis_costs_a_timeout_then_is_bypassed():
    store = _store(f"redis://127.0.0.1:{free_ports(1)[0]}/0")
    cache = ResponseCache(store, Codec(SECRET, OUTPUTS, 2**20), "m", "v1", "tf:", 8, Tally(), {})
    started = time.perf_counter()
    assert cache.lookup(["tf:x"], [1]) == [None]
    assert cache.lookup(["tf:x"], [1]) == [None]
    assert time.perf_counter() - started < 1.0
    assert cache.tally.total(m.CACHE_ERRORS) == 2
    cache.close()
