"""A circuit breaker.

Closed: calls go through. After `failures` consecutive failures it opens for `seconds`; then one probe is let
through (half-open): success closes it, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, failures: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max(1, int(failures))
        self.seconds = float(seconds)
        self.clock = clock
        self.consecutive = 0
        self.open_until = 0.0
        self.opened = 0  # how many times it opened

    @property
    def skipping(self) -> bool:
        """True while calls are refused (open, its wait not over): what the breaker gauge shows."""
        return self.open_until > 0.0 and self.clock() < self.open_until

    def allow(self) -> bool:
        """True if a call may go through now (closed, or open with its wait over: a probe)."""
        return not self.skipping

    def success(self) -> None:
        self.consecutive = 0
        self.open_until = 0.0

    def failure(self) -> bool:
        """Record a failure; returns True when this one opened (or re-opened) the breaker."""
        self.consecutive += 1
        if self.consecutive >= self.max_failures or self.open_until > 0.0:
            self.opened += 1
            self.open_until = self.clock() + self.seconds
            return True
        return False
