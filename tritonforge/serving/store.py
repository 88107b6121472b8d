"""Where the response cache keeps values.

RedisStore: shared by every replica. Reads fetch at most `max_value_bytes` + 1 bytes of each value (GETRANGE in
one pipeline), so a huge value planted in the Redis never reaches this process whole; writes SET with a TTL.
Reads and writes have breakers of their own: a Redis that refuses writes (maxmemory with noeviction) still
serves hits, and one that is down or slow is bypassed for `bypass_seconds`. Each breaker reports its state
changes (not every request) through `on_state`.
MemoryStore: an in-process LRU bounded in bytes, with the same TTL, when no Redis is configured. The bound is the
memory its entries take: key and value objects and the bookkeeping of each entry, not just the values' lengths.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar

from .breaker import CircuitBreaker
from .settings import CacheSettings

T = TypeVar("T")
Operation = Literal["reads", "writes"]
# on_state(operation, bypassed, reason): a store's reads or writes were bypassed after an error, or resumed.
OnState = Callable[[Operation, bool, str], None]


class Store(Protocol):
    """What the response cache keeps its values in."""

    @property
    def kind(self) -> str: ...

    @property
    def max_value_bytes(self) -> int:
        """The largest value it keeps."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None: ...


class StoreUnavailable(Exception):
    """The store cannot be used right now (error, timeout, or bypassed after one)."""


# What one MemoryStore entry takes beyond sys.getsizeof(key) + sys.getsizeof(value): the (expires, value) tuple
# (56 bytes), the expiry float (24) and the entry's share of the OrderedDict (hash-table slot, index and linked-list
# node). Measured with tracemalloc on CPython 3.11: 134 to 154 bytes an entry over 1,000 to 160,000 entries, the
# most where the table has just doubled; 160 keeps the accounting at or above what is really used.
ENTRY_OVERHEAD_BYTES = 160


def entry_cost(key: str, value: bytes) -> int:
    """The bytes one entry takes in a MemoryStore."""
    return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD_BYTES


class MemoryStore:
    kind = "memory"

    def __init__(self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = int(max_bytes)
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.bytes = 0  # entry_cost of every entry held: never above max_bytes
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expires, value)
        self._lock = threading.Lock()

    @property
    def max_value_bytes(self) -> int:
        return self.max_bytes

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self.clock()
        out: list[bytes | None] = []
        with self._lock:
            for key in keys:
                item = self._data.get(key)
                if item is None or item[0] <= now:
                    if item is not None:
                        self._drop(key)
                    out.append(None)
                else:
                    self._data.move_to_end(key)
                    out.append(item[1])
        return out

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        expires = self.clock() + self.ttl_s
        with self._lock:
            for key, value in items:
                cost = entry_cost(key, value)
                if cost > self.max_bytes:
                    continue
                if key in self._data:
                    self._drop(key)
                while self._data and self.bytes + cost > self.max_bytes:
                    self._drop(next(iter(self._data)))  # the least recently used
                self._data[key] = (expires, value)
                self.bytes += cost

    def _drop(self, key: str) -> None:
        _, value = self._data.pop(key)
        self.bytes -= entry_cost(key, value)


def secret_from_environment(variable: str) -> bytes:
    """The value of `variable`, or the contents of the file named by `variable`_FILE (a mounted Secret)."""
    value = os.environ.get(variable, "")
    if value:
        return value.encode()
    path = os.environ.get(f"{variable}_FILE", "")
    if path:
        with open(path, "rb") as f:
            return f.read().strip()
    return b""


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        max_value_bytes: int,
        socket_timeout_ms: float,
        max_connections: int,
        bypass_seconds: float,
        password: bytes = b"",
        ssl_ca_certs: str = "",
        ssl_certfile: str = "",
        ssl_keyfile: str = "",
        on_state: OnState | None = None,
    ) -> None:
        import redis

        kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout_ms / 1000.0,
            "socket_connect_timeout": socket_timeout_ms / 1000.0,
            "max_connections": int(max_connections),
            "retry_on_timeout": False,
        }
        if password:
            kwargs["password"] = password.decode()
        if url.startswith("rediss://"):
            for option, value in (("ssl_ca_certs", ssl_ca_certs), ("ssl_certfile", ssl_certfile), ("ssl_keyfile", ssl_keyfile)):
                if value:
                    kwargs[option] = value
        self.url = url
        self.ttl_ms = int(float(ttl_s) * 1000)
        self.max_value_bytes = int(max_value_bytes)
        self.client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, **kwargs))
        self.read_breaker = CircuitBreaker(failures=1, seconds=bypass_seconds)
        self.write_breaker = CircuitBreaker(failures=1, seconds=bypass_seconds)
        self.on_state: OnState = on_state or (lambda operation, bypassed, reason: None)
        self._state = {"reads": False, "writes": False}  # bypassed?
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: CacheSettings, url: str, password: bytes, on_state: OnState | None = None) -> RedisStore:
        """The store of a public model's cache settings, at `url` (its URL variable's value, or the settings')."""
        return cls(
            url,
            ttl_s=settings.ttl_s,
            max_value_bytes=settings.max_value_bytes,
            socket_timeout_ms=settings.socket_timeout_ms,
            max_connections=settings.max_connections,
            bypass_seconds=settings.bypass_seconds,
            password=password,
            ssl_ca_certs=settings.ssl_ca_certs,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            on_state=on_state,
        )

    def _report(self, operation: Operation, bypassed: bool, reason: str = "") -> None:
        with self._lock:
            changed = self._state[operation] != bypassed
            self._state[operation] = bypassed
        if changed:
            self.on_state(operation, bypassed, reason)

    def _guard(self, operation: Operation, breaker: CircuitBreaker, fn: Callable[[], T]) -> T:
        if not breaker.allow():
            raise StoreUnavailable(f"redis {operation} at {self.url} bypassed after an error")
        try:
            result = fn()
        except Exception as e:  # redis.RedisError, OSError, timeouts: all mean "serve without the cache"
            breaker.failure()
            reason = f"{type(e).__name__}: {e}"
            self._report(operation, True, reason)
            raise StoreUnavailable(f"redis {operation} at {self.url}: {reason}") from None
        breaker.success()
        self._report(operation, False)
        return result

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        def read() -> list[bytes | None]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.getrange(key, 0, self.max_value_bytes)  # inclusive: one byte more than a value may have
            # A key holding another type (WRONGTYPE) is a miss for that key, not a broken store.
            return [v if isinstance(v, bytes) and v else None for v in pipe.execute(raise_on_error=False)]

        return self._guard("reads", self.read_breaker, read)

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, px=self.ttl_ms)
            pipe.execute()

        return self._guard("writes", self.write_breaker, write)
