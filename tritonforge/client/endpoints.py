"""Several server endpoints: round-robin, endpoints that failed sit out a growing back-off, each attempt gets a
share of the deadline, and gRPC errors are classified."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tritonforge.client.errors import ClientError, DeadlineExceeded, EndpointsUnavailable, InferenceFailed, ModelNotFound

# Worth another endpoint: the server is gone, restarting, or not serving the model right now.
RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED", "StatusCode.UNKNOWN"}
DEADLINE = "StatusCode.DEADLINE_EXCEEDED"


class EndpointPool:
    """Round-robin over endpoints. One that failed (connection error, attempt timeout) sits out `cooldown`
    seconds, doubling with each failure in a row up to `max_cooldown`; when its time is up one caller at a time
    tries it again (the others keep skipping it) until an attempt succeeds. If every endpoint is out, they are
    tried anyway, soonest back first."""

    def __init__(self, urls: Sequence[str], cooldown: float = 1.0, max_cooldown: float = 30.0) -> None:
        if not urls:
            raise ValueError("at least one endpoint is needed")
        self.urls = list(urls)
        self.cooldown, self.max_cooldown = cooldown, max_cooldown
        self._next = 0
        self._down_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._probing: set[str] = set()
        self._lock = threading.Lock()

    def order(self) -> list[str]:
        """Endpoints to try for one request: the next in turn first, endpoints sitting out last."""
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
                    self._probing.add(url)  # this caller probes it; the others skip it meanwhile
                    up.insert(0, url)
            down = sorted((u for u in rotated if u not in up), key=lambda u: self._down_until.get(u, 0.0))
            return up + down

    def mark_down(self, url: str) -> None:
        with self._lock:
            n = self._failures.get(url, 0) + 1
            self._failures[url] = n
            self._down_until[url] = time.monotonic() + min(self.max_cooldown, self.cooldown * 2 ** (n - 1))
            self._probing.discard(url)

    def mark_up(self, url: str) -> None:
        with self._lock:
            self._failures.pop(url, None)
            self._down_until.pop(url, None)
            self._probing.discard(url)

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
        return min(self.max_backoff, self.backoff * (2 ** attempt))


def attempt_share(timeout: float | None, endpoints: int, retries: int) -> float | None:
    """The default time one attempt gets: the deadline shared by the attempts of the first round over every
    endpoint and one more, so a replica that hangs leaves time to try the others."""
    if timeout is None:
        return None
    return timeout / (max(1, endpoints) + min(1, retries))


def pool_and_policy(urls: Sequence[str], timeout: float | None, retries: int, backoff: float, max_backoff: float,
                    attempt_timeout: float | None, cooldown: float) -> tuple[EndpointPool, RetryPolicy]:
    """What both clients are built from; `attempt_timeout` None means each attempt's share (attempt_share)."""
    share = attempt_timeout if attempt_timeout is not None else attempt_share(timeout, len(urls), retries)
    return EndpointPool(urls, cooldown), RetryPolicy(retries, backoff, max_backoff, share)


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


def is_retryable(exc: Exception) -> bool:
    """Worth another endpoint: a connection error, or an attempt that ran out of its share of the deadline
    (inference is idempotent here)."""
    return is_connection_error(exc) or is_timeout(exc)


def translate(exc: Exception, model: str, url: str) -> ClientError:
    """A client error that names model, endpoint and the server's message."""
    status, msg = status_of(exc), message_of(exc)
    if is_timeout(exc):
        return DeadlineExceeded(f"model '{model}' at {url}: request timed out ({msg})")
    if "unknown model" in msg.lower() or status == "StatusCode.NOT_FOUND":
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

    for step in plan:            # the caller sleeps on step.sleep, else tries step.url for step.left seconds
        ... plan.failed(url, exc) raises at once on errors another endpoint would not fix ...
    plan.exhausted()             # raises EndpointsUnavailable, or DeadlineExceeded when time ran out
    """

    def __init__(self, pool: EndpointPool, policy: RetryPolicy, timeout: float | None, model: str) -> None:
        self.pool, self.policy, self.model = pool, policy, model
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.errors: list[str] = []
        self.timed_out = False

    def _left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _budget(self, left: float | None) -> float | None:
        share = self.policy.attempt_timeout
        if left is None:
            return share
        return left if share is None else min(left, share)

    def __iter__(self):
        for attempt in range(self.policy.retries + 1):
            if attempt:
                left = self._left()
                if left is not None and left <= 0:
                    return
                yield Step(sleep=self.policy.delay(attempt - 1) if left is None else min(left, self.policy.delay(attempt - 1)))
            for url in self.pool.order():
                left = self._left()
                if left is not None and left <= 0:
                    return
                yield Step(url=url, left=self._budget(left))

    def succeeded(self, url: str) -> None:
        self.pool.mark_up(url)

    def failed(self, url: str, exc: Exception) -> None:
        """Record a failed try; raise the translated error unless another endpoint or a retry may succeed."""
        if not is_retryable(exc):
            raise translate(exc, self.model, url) from None
        self.pool.mark_down(url)
        self.timed_out = self.timed_out or is_timeout(exc)
        self.errors.append(f"{url}: {message_of(exc)}")

    def exhausted(self) -> ClientError:
        last = self.errors[-1] if self.errors else "deadline passed before any attempt"
        text = f"model '{self.model}': no endpoint answered ({len(self.errors)} failed attempts; last: {last})"
        left = self._left()
        if self.timed_out and left is not None and left <= 0:
            return DeadlineExceeded(text)
        return EndpointsUnavailable(text)
