"""Several server endpoints: round-robin, skip those recently seen down, and classify gRPC errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tritonforge.client.errors import ClientError, DeadlineExceeded, EndpointsUnavailable, InferenceFailed, ModelNotFound

# Worth another endpoint: the server is gone, restarting, or not serving the model right now.
RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED", "StatusCode.UNKNOWN"}


class EndpointPool:
    """Round-robin over endpoints; one marked down sits out `cooldown` seconds unless all are down."""

    def __init__(self, urls: Sequence[str], cooldown: float = 2.0) -> None:
        if not urls:
            raise ValueError("at least one endpoint is needed")
        self.urls = list(urls)
        self.cooldown = cooldown
        self._next = 0
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def order(self) -> list[str]:
        """Endpoints to try for one request: the next in turn first, endpoints in cooldown last."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.urls)
            now = time.monotonic()
            rotated = self.urls[start:] + self.urls[:start]
            up = [u for u in rotated if self._down_until.get(u, 0.0) <= now]
            down = [u for u in rotated if u not in up]
            return up + down

    def mark_down(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + self.cooldown

    def mark_up(self, url: str) -> None:
        with self._lock:
            self._down_until.pop(url, None)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts beyond the first, exponential backoff between rounds, capped."""

    retries: int = 3
    backoff: float = 0.05
    max_backoff: float = 1.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** attempt))


def status_of(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return str(status() if callable(status) else status or "")


def message_of(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    return str(msg() if callable(msg) else msg or exc)


def is_retryable(exc: Exception) -> bool:
    """True for errors another endpoint (or a later try) may not have: connection lost, server not ready."""
    status = status_of(exc)
    if status in RETRYABLE:
        return True
    msg = message_of(exc).lower()
    return "failed to connect" in msg or "connection refused" in msg or "socket closed" in msg


def translate(exc: Exception, model: str, url: str) -> ClientError:
    """A client error that names model, endpoint and the server's message."""
    status, msg = status_of(exc), message_of(exc)
    if status == "StatusCode.DEADLINE_EXCEEDED" or "deadline exceeded" in msg.lower():
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

    for step in plan:            # the caller sleeps on step.sleep, else tries step.url
        ... plan.failed(url, exc) raises at once on errors another endpoint would not fix ...
    plan.exhausted()             # raises EndpointsUnavailable
    """

    def __init__(self, pool: EndpointPool, policy: RetryPolicy, timeout: float | None, model: str) -> None:
        self.pool, self.policy, self.model = pool, policy, model
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.errors: list[str] = []

    def _left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

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
                yield Step(url=url, left=left)

    def succeeded(self, url: str) -> None:
        self.pool.mark_up(url)

    def failed(self, url: str, exc: Exception) -> None:
        """Record a failed try; raise the translated error unless another endpoint or a retry may succeed."""
        if not is_retryable(exc):
            raise translate(exc, self.model, url) from None
        self.pool.mark_down(url)
        self.errors.append(f"{url}: {message_of(exc)}")

    def exhausted(self) -> EndpointsUnavailable:
        last = self.errors[-1] if self.errors else "deadline passed before any attempt"
        return EndpointsUnavailable(
            f"model '{self.model}': no endpoint answered ({len(self.errors)} failed attempts; last: {last})"
        )
