"""Several server endpoints: round-robin, endpoints that failed sit out a growing back-off, each attempt gets a
share of the deadline, and gRPC errors are classified."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tritonforge.client.errors import (
    ClientError,
    DeadlineExceeded,
    EndpointsUnavailable,
    InferenceFailed,
    InvalidEndpoint,
    ModelNotFound,
)

# Worth another endpoint: the server is gone, restarting, or not serving the model right now.
RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED", "StatusCode.UNKNOWN"}
DEADLINE = "StatusCode.DEADLINE_EXCEEDED"
# This endpoint does not serve the model: a replica that is draining (Triton unloads every model on SIGTERM and
# answers "has no available versions" meanwhile) or one that never loaded it. Worth the other endpoints; the
# request fails with ModelNotFound only when every endpoint says so.
MODEL_MISSING = "StatusCode.NOT_FOUND"
MISSING_MESSAGES = ("unknown model", "has no available versions")
# A call's deadline when none is given (`timeout=None`): a server that accepts the connection and never answers
# must not hold a caller for ever. Pass a larger `timeout` for calls known to take longer.
DEFAULT_TIMEOUT = 30.0


GRPC_PORT = 8001  # Triton's default gRPC port (HTTP: 8000)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)")


def grpc_endpoint(url: str, *, port: bool = False) -> str:
    """`url` if it is a gRPC host:port (the one rule: the client, the CLI's --url and the server checks use it); a
    URL with a scheme (http://host:8000), or with `port` one without a port, raises InvalidEndpoint at once, naming
    what to give instead (it would otherwise be retried until the deadline, then fail with gRPC's 'Misformatted
    domain name')."""
    found = _SCHEME.match(url)
    if found:
        scheme, netloc = found.groups()
        host = netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0] or "localhost"
        raise InvalidEndpoint(
            f"{url!r} is a {scheme}:// URL: the tritonforge client speaks gRPC and takes host:port, e.g. "
            f"'{host}:{GRPC_PORT}' (Triton's gRPC port is {GRPC_PORT} by default; its HTTP port, usually 8000, "
            "is not for this client)"
        )
    host, sep, number = url.rpartition(":")
    if port and (not sep or not host or not number.isdigit() or not 0 < int(number) < 65536):
        raise InvalidEndpoint(
            f"{url!r} is not a gRPC address: give host:port without a scheme, e.g. '{host or url or '127.0.0.1'}:"
            f"{GRPC_PORT}' (Triton's gRPC port is {GRPC_PORT} by default)"
        )
    return url


def resolve_timeout(timeout: float | None) -> float:
    """The deadline of a call in seconds: `timeout`, or DEFAULT_TIMEOUT for None (never unbounded)."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


class EndpointPool:
    """Round-robin over endpoints. One that failed (connection error, attempt timeout, the model missing) sits out
    `cooldown` seconds, doubling with each failure in a row up to `max_cooldown`; when its time is up one caller
    at a time probes it (the others keep skipping it): a probe that succeeds brings it back, one that fails in any
    way sends it back to its back-off, and a probe its caller gave up on before an answer (`release`) re-arms the
    same back-off, so an endpoint is never left marked as probed. If every endpoint is out, they are tried anyway,
    soonest back first."""

    def __init__(self, urls: Sequence[str], cooldown: float = 1.0, max_cooldown: float = 30.0) -> None:
        if not urls:
            raise ValueError("at least one endpoint is needed")
        self.urls = [grpc_endpoint(u) for u in urls]
        self.cooldown, self.max_cooldown = cooldown, max_cooldown
        self._next = 0
        self._down_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._probing: dict[str, object] = {}  # endpoint -> the caller probing it
        self._lock = threading.Lock()

    def order(self, prober: object | None = None) -> list[str]:
        """Endpoints to try for one request: the next in turn first, endpoints sitting out last. An endpoint whose
        back-off is over comes first, probed by this caller (`prober`, which must later report the probe's end:
        mark_up, mark_down or release)."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.urls)
            now = time.monotonic()
            rotated = self.urls[start:] + self.urls[:start]
            up = []
            for url in rotated:
                if url not in self._failures:
                    up.append(url)
                elif self._down_until[url] <= now and url not in self._probing:
                    self._probing[url] = prober  # this caller probes it; the others skip it meanwhile
                    up.insert(0, url)
            down = sorted((u for u in rotated if u not in up), key=lambda u: self._down_until.get(u, 0.0))
            return up + down

    def mark_down(self, url: str) -> None:
        with self._lock:
            n = self._failures.get(url, 0) + 1
            self._failures[url] = n
            self._down_until[url] = time.monotonic() + self._cooldown(n)
            self._probing.pop(url, None)

    def mark_up(self, url: str) -> None:
        with self._lock:
            self._failures.pop(url, None)
            self._down_until.pop(url, None)
            self._probing.pop(url, None)

    def release(self, url: str, prober: object) -> None:
        """`prober`'s probe of `url` ended without an answer (not tried before the deadline, cancelled, an
        unexpected error): the endpoint goes back to the back-off it had, if that probe still holds it."""
        with self._lock:
            if url in self._probing and self._probing[url] is prober:
                del self._probing[url]
                self._down_until[url] = time.monotonic() + self._cooldown(self._failures.get(url, 1))

    def _cooldown(self, failures: int) -> float:
        return min(self.max_cooldown, self.cooldown * 2 ** (failures - 1))

    def is_probing(self, url: str) -> bool:
        with self._lock:
            return url in self._probing

    def is_down(self, url: str) -> bool:
        with self._lock:
            return url in self._failures


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: rounds over the endpoints beyond the first, exponential backoff between rounds, capped;
    each attempt gets at most `attempt_timeout` seconds (None: the whole deadline left)."""

    retries: int = 3
    backoff: float = 0.05
    max_backoff: float = 1.0
    attempt_timeout: float | None = None

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2**attempt))


def attempt_share(timeout: float | None, endpoints: int, retries: int) -> float:
    """The default time one attempt gets: the deadline (None: DEFAULT_TIMEOUT) shared by the attempts of the
    first round over every endpoint and one more, so a replica that hangs leaves time to try the others."""
    return resolve_timeout(timeout) / (max(1, endpoints) + min(1, retries))


def pool_and_policy(
    urls: Sequence[str],
    timeout: float | None,
    retries: int,
    backoff: float,
    max_backoff: float,
    attempt_timeout: float | None,
    cooldown: float,
    max_cooldown: float = 30.0,
) -> tuple[EndpointPool, RetryPolicy]:
    """What both clients are built from; `attempt_timeout` None means each attempt's share (attempt_share)."""
    share = attempt_timeout if attempt_timeout is not None else attempt_share(timeout, len(urls), retries)
    return EndpointPool(urls, cooldown, max_cooldown), RetryPolicy(retries, backoff, max_backoff, share)


def status_of(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return str(status() if callable(status) else status or "")


def message_of(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    return str(msg() if callable(msg) else msg or exc)


def is_connection_error(exc: Exception) -> bool:
    """True for errors another endpoint (or a later try) may not have: connection lost, server not ready."""
    status = status_of(exc)
    if status in RETRYABLE:
        return True
    msg = message_of(exc).lower()
    return "failed to connect" in msg or "connection refused" in msg or "socket closed" in msg


def is_timeout(exc: Exception) -> bool:
    return status_of(exc) == DEADLINE or "deadline exceeded" in message_of(exc).lower()


def is_model_missing(exc: Exception) -> bool:
    """The endpoint answered that it does not serve the model (NOT_FOUND): draining, or never loaded it."""
    msg = message_of(exc).lower()
    return status_of(exc) == MODEL_MISSING or any(m in msg for m in MISSING_MESSAGES)


def is_retryable(exc: Exception) -> bool:
    """Worth another endpoint: a connection error, an attempt that ran out of its share of the deadline
    (inference is idempotent here), or an endpoint that does not serve the model. Request errors
    (INVALID_ARGUMENT and the like) are not: every endpoint would refuse the request the same way."""
    return is_connection_error(exc) or is_timeout(exc) or is_model_missing(exc)


def translate(exc: Exception, model: str, url: str) -> ClientError:
    """A client error that names model, endpoint and the server's message."""
    status, msg = status_of(exc), message_of(exc)
    if is_timeout(exc):
        return DeadlineExceeded(f"model '{model}' at {url}: request timed out ({msg})")
    if is_model_missing(exc):
        return ModelNotFound(f"model '{model}' at {url}: {msg}")
    return InferenceFailed(f"model '{model}' at {url}: {msg}", status)


@dataclass(frozen=True)
class Step:
    """One step of an attempt plan: try `url` with `left` seconds, or sleep `sleep` seconds first."""

    url: str = ""
    left: float | None = None
    sleep: float = 0.0


class AttemptPlan:
    """The order of endpoint tries for one call, shared by the blocking and the asyncio client.

    try:
        for step in plan:        # the caller sleeps on step.sleep, else tries step.url for step.left seconds
            ... plan.failed(url, exc) raises at once on errors another endpoint would not fix, and with
            ... ModelNotFound once every endpoint has said it does not serve the model
            ... plan.succeeded(url) on an answer
        raise plan.exhausted()   # EndpointsUnavailable, or DeadlineExceeded when time ran out
    finally:
        plan.close()             # a probe this call began and never finished goes back to its back-off

    The deadline is `timeout` seconds from now; None means DEFAULT_TIMEOUT, never unbounded.
    """

    def __init__(self, pool: EndpointPool, policy: RetryPolicy, timeout: float | None, model: str) -> None:
        self.pool, self.policy, self.model = pool, policy, model
        self.deadline = time.monotonic() + resolve_timeout(timeout)
        self.errors: list[str] = []
        self.missing: dict[str, str] = {}  # endpoint -> its answer that it does not serve the model
        self.timed_out = False

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _budget(self, left: float) -> float:
        share = self.policy.attempt_timeout
        return left if share is None else min(left, share)

    def __iter__(self) -> Iterator[Step]:
        for attempt in range(self.policy.retries + 1):
            if attempt:
                left = self._left()
                if left <= 0:
                    return
                yield Step(sleep=min(left, self.policy.delay(attempt - 1)))
            for url in self.pool.order(prober=self):
                left = self._left()
                if left <= 0:
                    return
                yield Step(url=url, left=self._budget(left))

    def succeeded(self, url: str) -> None:
        self.pool.mark_up(url)

    def failed(self, url: str, exc: Exception) -> None:
        """Record a failed try; raise the translated error unless another endpoint or a retry may succeed."""
        if not is_retryable(exc):
            raise translate(exc, self.model, url) from None  # close() returns a probed endpoint to its back-off
        self.pool.mark_down(url)
        self.timed_out = self.timed_out or is_timeout(exc)
        self.errors.append(f"{url}: {message_of(exc)}")
        if is_model_missing(exc) and not is_connection_error(exc):
            self.missing[url] = message_of(exc)
            if set(self.missing) >= set(self.pool.urls):
                said = "; ".join(f"{u}: {m}" for u, m in self.missing.items())
                raise ModelNotFound(f"model '{self.model}' is not served by any endpoint ({said})") from None

    def close(self) -> None:
        """Hand back every probe this call began and did not finish (mark_up and mark_down already did)."""
        for url in self.pool.urls:
            self.pool.release(url, self)

    def exhausted(self) -> ClientError:
        last = self.errors[-1] if self.errors else "deadline passed before any attempt"
        text = f"model '{self.model}': no endpoint answered ({len(self.errors)} failed attempts; last: {last})"
        if self.timed_out and self._left() <= 0:
            return DeadlineExceeded(text)
        return EndpointsUnavailable(text)
