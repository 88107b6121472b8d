"""A circuit breaker (copied beside tritonforge's Python-backend models; no Triton imports).

Closed: calls go through. After `failures` consecutive failures (or one 'unavailable' failure) it opens for
`seconds`; then one probe is let through (half-open): success closes it, failure opens it again.
"""

import time


class CircuitBreaker:
    def __init__(self, failures=3, seconds=30.0, clock=time.monotonic):
        self.max_failures = max(1, int(failures))
        self.seconds = float(seconds)
        self.clock = clock
        self.consecutive = 0
        self.open_until = 0.0
        self.opened = 0  # how many times it opened

    @property
    def is_open(self):
        return self.open_until > 0.0

    def allow(self):
        """True if a call may go through now (closed, or open with its wait over: a probe)."""
        return not self.is_open or self.clock() >= self.open_until

    def success(self):
        self.consecutive = 0
        self.open_until = 0.0

    def failure(self, unavailable=False):
        """Record a failure; `unavailable` (the target is not there at all) opens the breaker at once."""
        self.consecutive += 1
        if unavailable or self.consecutive >= self.max_failures or self.is_open:
            if not self.is_open or self.clock() >= self.open_until:
                self.opened += 1
            self.open_until = self.clock() + self.seconds
