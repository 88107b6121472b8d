"""The response cache of one public model: lookups on the request's path, writes off it.

A miss is answered first; its outputs wait in a small in-process map (so a repeat is a hit at once) until a
writer thread has compressed and stored them. The writer's queue is bounded: when the store cannot keep up,
further writes are dropped and counted, never queued without limit. A store that errs is bypassed: requests are
then served by the model, never failed by the cache. Every value read back is checked by the codec before it is
decoded; one that fails is a miss, counted by reason. Values that fail authentication (most likely written by a
replica with another secret) are also reported through `on_authentication`, once each time that starts or stops.

Counts (in `tally`): tritonforge_cache_{hits,misses,errors,stored_bytes,rejected,dropped_writes}_total and the
tritonforge_cache_hit_latency_us observations.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import metric_names as m
from .batching import Batch
from .codec import Codec, InvalidValue, cache_key
from .store import Store, StoreUnavailable
from .tally import Tally

# What the writer thread takes: computed answers, a flush marker, or None to stop.
_Job = list[tuple[str, Batch]] | threading.Event | None


def authentication_message(model: str, failing: bool, secret_env: str) -> str:
    """The log line for a change of `on_authentication` state."""
    if failing:
        return (
            f"{model}: cache values fail authentication and are served as misses: values written with another "
            f"secret: do the replicas share {secret_env}?"
        )
    return f"{model}: cache values authenticate again"


class ResponseCache:
    def __init__(
        self,
        store: Store,
        codec: Codec,
        public: str,
        version: str,
        prefix: str,
        max_pending_writes: int,
        tally: Tally,
        labels: Mapping[str, str],
        on_authentication: Callable[[bool], None] | None = None,
    ) -> None:
        self.store, self.codec, self.public, self.version, self.prefix = store, codec, public, version, prefix
        self.tally, self.labels = tally, dict(labels)
        # on_authentication(failing): called when stored values start failing authentication (failing=True) and
        # when a lookup next authenticates values with none failing (False); not once per value.
        self.on_authentication: Callable[[bool], None] = on_authentication or (lambda failing: None)
        self._authentication_failing = False
        self._pending: dict[str, Batch] = {}  # key -> outputs computed but not yet in the store
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=max(1, int(max_pending_writes)))
        self.write_errors: list[str] = []  # the last few, for the model to log off the request path
        self._writer = threading.Thread(target=self._write_loop, name="cache-writer", daemon=True)
        self._writer.start()

    def key(self, arrays: Batch) -> str:
        return cache_key(self.public, self.version, arrays, self.prefix)

    def lookup(self, keys: Sequence[str], batches: Sequence[int]) -> list[Batch | None]:
        """Outputs for each key (None for a miss); `batches[i]` is the number of rows key i must answer."""
        with self._lock:
            found = [self._pending.get(k) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            try:
                stored: list[bytes | None] = self.store.get_many([keys[i] for i in todo])
            except StoreUnavailable:
                self.tally.add(m.CACHE_ERRORS, **self.labels)
                stored = [None] * len(todo)
            authenticated = unauthenticated = 0
            for i, value in zip(todo, stored, strict=True):
                if value is None:
                    continue
                try:
                    found[i] = self.codec.decode(keys[i], value, batches[i])
                    authenticated += 1
                except InvalidValue as e:
                    self.tally.add(m.CACHE_REJECTED, reason=e.reason, **self.labels)
                    unauthenticated += e.reason == "authentication"
                    authenticated += e.reason in ("size", "shape")  # checked after the tag: that matched
            if authenticated or unauthenticated:
                self._report_authentication(unauthenticated > 0)
        hits = sum(f is not None for f in found)
        self.tally.add(m.CACHE_HITS, hits, **self.labels)
        self.tally.add(m.CACHE_MISSES, len(keys) - hits, **self.labels)
        return found

    def _report_authentication(self, failing: bool) -> None:
        with self._lock:
            changed = self._authentication_failing != failing
            self._authentication_failing = failing
        if changed:
            self.on_authentication(failing)

    def put(self, computed: Sequence[tuple[str, Batch]]) -> None:
        """Remember computed outputs [(key, outputs)] and queue them for the store; drop them if the queue is full."""
        items = [(k, {n: np.array(v, copy=True) for n, v in out.items()}) for k, out in computed]
        if not items:
            return
        with self._lock:
            self._pending.update(items)
        try:
            self._queue.put_nowait(items)
        except queue.Full:
            with self._lock:
                for k, _ in items:
                    self._pending.pop(k, None)
            self.tally.add(m.CACHE_DROPPED_WRITES, len(items), **self.labels)

    def _write_loop(self) -> None:
        while True:
            items = self._queue.get()
            if items is None:
                return
            if isinstance(items, threading.Event):
                items.set()
                continue
            try:
                encoded = [(k, self.codec.encode(k, out)) for k, out in items]
                values = [(k, v) for k, v in encoded if v is not None and len(v) <= self.store_limit]
                if values:
                    self.store.set_many(values)
                self.tally.add(m.CACHE_STORED_BYTES, sum(len(v) for _, v in values), **self.labels)
            except Exception as e:  # StoreUnavailable, or anything else: the writer must never die
                self.tally.add(m.CACHE_ERRORS, **self.labels)
                self.write_errors = (self.write_errors + [f"{type(e).__name__}: {e}"])[-5:]
            finally:
                with self._lock:
                    for k, _ in items:
                        self._pending.pop(k, None)

    @property
    def store_limit(self) -> int:
        """The largest value the store keeps."""
        return self.store.max_value_bytes

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every write queued so far is done (tests, shutdown). False if that took too long."""
        reached = threading.Event()
        try:
            self._queue.put(reached, timeout=timeout)
        except queue.Full:
            return False
        return reached.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=5)
