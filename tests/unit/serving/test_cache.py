"""The response cache with its in-process store: hits, TTL, a bounded writer queue, values it refuses."""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc

import numpy as np
import pytest

from tritonforge.serving import metric_names as m
from tritonforge.serving.cache import ResponseCache
from tritonforge.serving.codec import Codec
from tritonforge.serving.store import MemoryStore, entry_cost
from tritonforge.serving.tally import Tally

OUTPUTS = [("y", np.float32, (4,))]


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def _cache(store, max_pending=256):
    return ResponseCache(store, Codec(b"k" * 32, OUTPUTS, 2**20), "m", "v1", "p:", max_pending, Tally(), {"model": "m"})


def _answer(v=1.0):
    return {"y": np.full((1, 4), v, np.float32)}


def test_a_miss_is_a_hit_at_once_and_after_it_is_stored():
    cache = _cache(MemoryStore(2**20, 300))
    key = cache.key({"x": np.ones((1, 2), np.float32)})
    assert cache.lookup([key], [1]) == [None]
    cache.put([(key, _answer(2.0))])
    assert cache.lookup([key], [1])[0]["y"][0, 0] == 2.0  # from the pending map, before the writer ran
    assert cache.flush()
    assert cache.store.get_many([key])[0] is not None
    assert cache.lookup([key], [1])[0]["y"][0, 0] == 2.0
    assert cache.tally.total(m.CACHE_HITS) == 2 and cache.tally.total(m.CACHE_MISSES) == 1
    cache.close()


def test_entries_expire_after_their_ttl():
    clock = Clock()
    store = MemoryStore(2**20, 10.0, clock=clock)
    cache = _cache(store)
    cache.put([("p:a", _answer())])
    cache.flush()
    clock.t = 9.9
    assert cache.lookup(["p:a"], [1])[0] is not None
    clock.t = 10.1
    assert cache.lookup(["p:a"], [1]) == [None]
    cache.close()


def test_the_memory_store_is_bounded_in_bytes():
    one = entry_cost("k0", b"x" * 100)
    assert one > 100 + 2  # keys and per-entry bookkeeping count, not only the value's length
    store = MemoryStore(int(2.5 * one), 300)
    store.set_many([(f"k{i}", b"x" * 100) for i in range(5)])
    assert store.bytes == 2 * one and store.get_many(["k0", "k3", "k4"]) == [None, b"x" * 100, b"x" * 100]
    store.set_many([("big", b"x" * (3 * one))])  # more than the whole bound: not stored, nothing evicted
    assert store.get_many(["big", "k4"]) == [None, b"x" * 100]


@pytest.mark.parametrize("value_bytes", [10, 100, 2000])
def test_the_memory_store_uses_no_more_memory_than_its_bound(value_bytes):
    """Filled well past its bound with entries of cache-sized keys, the store's real memory (tracemalloc) stays
    within 1.3x of the bound and its accounting never goes over it."""
    bound = 2 * 2**20
    tracemalloc.start()
    try:
        store = MemoryStore(bound, 300)
        base = tracemalloc.get_traced_memory()[0]
        peak_accounted = 0
        for batch in range(3 * bound // (value_bytes + 200) // 50):
            # fresh key and value objects the store alone keeps, as the cache's writer hands them over
            store.set_many(
                [
                    ("tritonforge:" + hashlib.sha256(f"{batch}/{i}".encode()).hexdigest(), os.urandom(value_bytes))
                    for i in range(50)
                ]
            )
            peak_accounted = max(peak_accounted, store.bytes)
            assert store.bytes <= bound
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(store._data) > 500 and store.bytes > 0.95 * bound  # it did fill up and evict
    assert used <= 1.3 * bound, f"{used / bound:.2f}x the bound"
    assert store.bytes == sum(entry_cost(k, v) for k, (_, v) in store._data.items())


def test_a_value_that_fails_its_check_is_a_miss_and_is_counted():
    store = MemoryStore(2**20, 300)
    cache = _cache(store)
    store.set_many([("p:a", b"TFC2" + b"\0" * 64)])
    assert cache.lookup(["p:a"], [1]) == [None]
    assert cache.tally.total(m.CACHE_REJECTED, reason="authentication") == 1
    cache.close()


class StuckStore(MemoryStore):
    """A store whose writes hang until released: the writer falls behind."""

    def __init__(self):
        super().__init__(2**20, 300)
        self.release = threading.Event()

    def set_many(self, items):
        self.release.wait(10)
        super().set_many(items)


def test_the_write_queue_is_bounded_and_drops_are_counted():
    store = StuckStore()
    cache = _cache(store, max_pending=2)
    for i in range(10):
        cache.put([(f"p:{i}", _answer(i))])
    dropped = cache.tally.total(m.CACHE_DROPPED_WRITES)
    assert 6 <= dropped <= 8  # one held by the writer, two queued
    assert len(cache._pending) <= 3
    store.release.set()
    cache.flush()
    assert cache._pending == {}
    cache.close()


def test_values_failing_authentication_are_reported_once_per_change_of_state():
    """Two replicas with different secrets: one log line when their values start failing, not one per value."""
    from tritonforge.serving.cache import authentication_message

    store, changes = MemoryStore(2**20, 300), []
    ours = ResponseCache(
        store, Codec(b"k" * 32, OUTPUTS, 2**20), "m", "v1", "p:", 16, Tally(), {"model": "m"}, on_authentication=changes.append
    )
    other = Codec(b"another secret", OUTPUTS, 2**20)
    keys = [f"p:{i}" for i in range(6)]
    store.set_many([(k, other.encode(k, _answer())) for k in keys])
    for _ in range(3):
        assert ours.lookup(keys[:3], [1] * 3) == [None] * 3
    assert changes == [True] and ours.tally.total(m.CACHE_REJECTED, reason="authentication") == 9
    ours.lookup(["p:absent"], [1])  # a miss says nothing about the secret
    store.set_many([(k, ours.codec.encode(k, _answer())) for k in keys[3:]])
    ours.lookup(keys[3:], [1] * 3)
    ours.lookup(keys[3:], [1] * 3)
    assert changes == [True, False]
    ours.lookup(keys[:4], [1] * 4)  # some still fail: failing again
    assert changes == [True, False, True]
    ours.close()
    line = authentication_message("m", True, "TRITONFORGE_CACHE_SECRET")
    assert "values written with another secret: do the replicas share TRITONFORGE_CACHE_SECRET?" in line
    assert "\n" not in line and authentication_message("m", False, "X") == "m: cache values authenticate again"
