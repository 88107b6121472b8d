"""The response cache with its in-process store: hits, TTL, a bounded writer queue, values it refuses."""

from __future__ import annotations

import threading

import numpy as np

from tritonforge.serving.cache import ResponseCache
from tritonforge.serving.codec import Codec
from tritonforge.serving.store import MemoryStore
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
    assert cache.tally.total("tritonforge_cache_hits_total") == 2 and cache.tally.total("tritonforge_cache_misses_total") == 1
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
    store = MemoryStore(250, 300)
    store.set_many([(f"k{i}", b"x" * 100) for i in range(5)])
    assert store.bytes <= 250 and store.get_many(["k0", "k4"]) == [None, b"x" * 100]


def test_a_value_that_fails_its_check_is_a_miss_and_is_counted():
    store = MemoryStore(2**20, 300)
    cache = _cache(store)
    store.set_many([("p:a", b"TFC2" + b"\0" * 64)])
    assert cache.lookup(["p:a"], [1]) == [None]
    assert cache.tally.total("tritonforge_cache_rejected_total", reason="authentication") == 1
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
    dropped = cache.tally.total("tritonforge_cache_dropped_writes_total")
    assert 6 <= dropped <= 8  # one held by the writer, two queued
    assert len(cache._pending) <= 3
    store.release.set()
    cache.flush()
    assert cache._pending == {}
    cache.close()
