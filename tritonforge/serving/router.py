"""The fallback router: each batch goes to the first rung that answers, fastest passing variant first.

A rung the server has not loaded (no backend for it here, a plan for another GPU) is absent: skipped without a
failure counted and without a log line per request, and probed again off the request path. A rung that fails
while loaded counts towards its circuit breaker; while the breaker is open the rung is skipped, and if every
present rung's breaker is open they are all tried anyway: a request fails only when nothing can answer it. An
error the request caused (RequestError) never counts against a rung: the batch is split and each request tried
alone, so the error reaches only the request that caused it, as INVALID_ARG.

Counts (in `tally`): tritonforge_router_{requests,failures,fallbacks}_total; gauges() gives
tritonforge_router_breaker_open and tritonforge_router_rung_absent per rung.
"""

import time

from .batching import concat, group_by_shape, split
from .breaker import CircuitBreaker
from .errors import RequestError, RungAbsent, RungFailure


class NoRungAnswered(Exception):
    """Every rung failed for this batch (a server-side fault: INTERNAL)."""


class Router:
    """`rungs`: objects with a `name`, `call(batch) -> outputs` (raising RequestError, RungAbsent or RungFailure)
    and `ready() -> bool` (for probing an absent rung), in the order to try them."""

    def __init__(self, rungs, breaker_failures, breaker_seconds, tally, labels, on_state=None, clock=time.monotonic):
        self.rungs = list(rungs)
        self.breakers = {r.name: CircuitBreaker(breaker_failures, breaker_seconds, clock) for r in self.rungs}
        self.absent = {r.name: False for r in self.rungs}
        self.tally, self.labels = tally, dict(labels)
        self.on_state = on_state or (lambda rung, state, reason: None)

    # ---- one batch -------------------------------------------------------------------------------
    def _candidates(self):
        present = [r for r in self.rungs if not self.absent[r.name]] or self.rungs
        return [r for r in present if self.breakers[r.name].allow()] or present

    def route(self, batch, requests=1):
        """Outputs of the first rung that answers `batch` (which holds `requests` requests)."""
        errors = []
        for rung in self._candidates():
            try:
                outputs = rung.call(batch)
            except RequestError:
                raise
            except RungAbsent as e:
                self._set_absent(rung, True, str(e))
                errors.append(f"{rung.name}: not loaded")
                continue
            except RungFailure as e:
                if self.breakers[rung.name].failure():
                    self.on_state(rung.name, "breaker open", str(e))
                self.tally.add("tritonforge_router_failures_total", variant=rung.name, **self.labels)
                errors.append(f"{rung.name}: {e}")
                continue
            self.breakers[rung.name].success()
            self._set_absent(rung, False)
            self.tally.add("tritonforge_router_requests_total", requests, variant=rung.name, **self.labels)
            if rung.name != next(r.name for r in self.rungs if not self.absent[r.name]):
                self.tally.add("tritonforge_router_fallbacks_total", requests, **self.labels)
            return outputs
        raise NoRungAnswered("no variant could answer: " + " | ".join(errors))

    def set_absent(self, name, reason):
        """Mark a rung absent from the start (the model found it not loaded when it initialized)."""
        self._set_absent(next(r for r in self.rungs if r.name == name), True, reason)

    def _set_absent(self, rung, absent, reason=""):
        if self.absent[rung.name] != absent:
            self.absent[rung.name] = absent
            self.on_state(rung.name, "not loaded" if absent else "loaded", reason)

    # ---- the requests of one execute ---------------------------------------------------------------
    def route_requests(self, arrays_per_request, indices):
        """{request index: outputs or the exception that request gets} for the requests at `indices`; requests
        of one shape go as one batch, and a batch that fails is retried request by request."""
        results = {}
        for group in group_by_shape(arrays_per_request, indices):
            batch, sizes = concat(arrays_per_request, group)
            try:
                parts = split(self.route(batch, len(group)), sizes)
            except (RequestError, NoRungAnswered) as e:
                if len(group) == 1:
                    results[group[0]] = e
                    continue
                for i in group:  # isolate the request(s) at fault
                    try:
                        results[i] = self.route(arrays_per_request[i], 1)
                    except (RequestError, NoRungAnswered) as e2:
                        results[i] = e2
                continue
            results.update(zip(group, parts))
        return results

    # ---- off the request path ----------------------------------------------------------------------
    def probe_absent(self):
        """Ask every absent rung whether it is loaded now."""
        for rung in self.rungs:
            if self.absent[rung.name]:
                try:
                    ready = rung.ready()
                except Exception:
                    ready = False
                if ready:
                    self._set_absent(rung, False)

    def gauges(self):
        """{(metric, rung): value} as they stand now: a breaker reads 0 once its open period has passed."""
        out = {}
        for rung in self.rungs:
            out[("tritonforge_router_breaker_open", rung.name)] = 1 if self.breakers[rung.name].skipping else 0
            out[("tritonforge_router_rung_absent", rung.name)] = 1 if self.absent[rung.name] else 0
        return out
