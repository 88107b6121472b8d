"""Where the response cache keeps values (copied beside the cache model; no Triton imports).

RedisStore: shared by every replica; MGET for a batch, SET with a TTL per entry, a connection pool, short
socket timeouts, password from an environment variable, TLS. Any Redis error opens a breaker, and the cache is
bypassed while it is open: a cache fault never fails a request.
MemoryStore: in-process LRU bounded in bytes, with the same TTL, when no Redis is configured.
"""

import os
import threading
import time
from collections import OrderedDict

from tf_breaker import CircuitBreaker


class StoreUnavailable(Exception):
    """The store cannot be used right now (error, timeout, or bypassed after one)."""


class MemoryStore:
    kind = "memory"

    def __init__(self, max_bytes=256 * 2**20, ttl_s=300.0, clock=time.monotonic):
        self.max_bytes = int(max_bytes)
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.bytes = 0
        self._data = OrderedDict()  # key -> (expires, value)
        self._lock = threading.Lock()

    def get_many(self, keys):
        now, out = self.clock(), []
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

    def set_many(self, items):
        expires = self.clock() + self.ttl_s
        with self._lock:
            for key, value in items:
                if len(value) > self.max_bytes:
                    continue
                if key in self._data:
                    self._drop(key)
                self._data[key] = (expires, value)
                self.bytes += len(value)
                while self.bytes > self.max_bytes:
                    self._drop(next(iter(self._data)))

    def _drop(self, key):
        _, value = self._data.pop(key)
        self.bytes -= len(value)


class RedisStore:
    kind = "redis"

    def __init__(self, url, ttl_s=300.0, password_env="", socket_timeout_ms=50.0, max_connections=16,
                 bypass_seconds=5.0, ssl_ca_certs="", ssl_certfile="", ssl_keyfile=""):
        import redis

        kwargs = {
            "socket_timeout": socket_timeout_ms / 1000.0,
            "socket_connect_timeout": socket_timeout_ms / 1000.0,
            "max_connections": int(max_connections),
            "retry_on_timeout": False,
        }
        password = os.environ.get(password_env) if password_env else None
        if password:
            kwargs["password"] = password
        if url.startswith("rediss://"):
            for option, value in (("ssl_ca_certs", ssl_ca_certs), ("ssl_certfile", ssl_certfile),
                                  ("ssl_keyfile", ssl_keyfile)):
                if value:
                    kwargs[option] = value
        self.url = url
        self.ttl_ms = int(float(ttl_s) * 1000)
        self.client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, **kwargs))
        self.breaker = CircuitBreaker(failures=1, seconds=bypass_seconds)

    def _guard(self, fn):
        if not self.breaker.allow():
            raise StoreUnavailable(f"redis at {self.url} bypassed after an error")
        try:
            result = fn()
        except Exception as e:  # redis.RedisError, OSError, timeouts: all mean "serve without the cache"
            self.breaker.failure()
            raise StoreUnavailable(f"redis at {self.url}: {type(e).__name__}: {e}") from None
        self.breaker.success()
        return result

    def get_many(self, keys):
        return self._guard(lambda: self.client.mget(keys))

    def set_many(self, items):
        def write():
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, px=self.ttl_ms)
            pipe.execute()
        return self._guard(write)


def make_store(params):
    """A store from the cache model's string parameters; the URL may come from an environment variable."""
    url = os.environ.get(params.get("redis_url_env", "TRITONFORGE_REDIS_URL"), "") or params.get("redis_url", "")
    ttl = float(params.get("ttl_s", "300"))
    if params.get("backend", "memory") == "redis" and url:
        return RedisStore(url, ttl_s=ttl, password_env=params.get("password_env", ""),
                          socket_timeout_ms=float(params.get("socket_timeout_ms", "50")),
                          max_connections=int(params.get("max_connections", "16")),
                          bypass_seconds=float(params.get("bypass_seconds", "5")),
                          ssl_ca_certs=params.get("ssl_ca_certs", ""), ssl_certfile=params.get("ssl_certfile", ""),
                          ssl_keyfile=params.get("ssl_keyfile", ""))
    return MemoryStore(max_bytes=int(params.get("memory_max_bytes", str(256 * 2**20))), ttl_s=ttl)
