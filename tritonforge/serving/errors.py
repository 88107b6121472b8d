"""How the serving logic tells a request's own fault from a server-side one."""


class RequestError(Exception):
    """The request caused this (non-finite values, out of range, too large, not UTF-8): it goes back to that
    request as INVALID_ARG, and never counts against a rung."""


class RungAbsent(Exception):
    """The rung is not loaded on this server (no backend for it, a plan for another GPU): skipped, not a failure."""


class RungFailure(Exception):
    """The rung failed while loaded: counts towards its circuit breaker."""
