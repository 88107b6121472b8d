"""The fallback router: each batch goes to the first rung that answers, fastest passing variant first.

A rung the server has not loaded (no backend for it here, a plan for another GPU) is absent: skipped without a
failure counted and without a log line per request, and probed again off the request path. A rung that fails
while loaded counts towards its circuit breaker; while the breaker is open the rung is skipped, and if every
present rung's breaker is open they are all tried anyway: a request fails only when nothing can answer it.

An error a request caused never counts against a rung, and reaches only that request, as INVALID_ARG:
- RequestError (a rung says the input is bad): a batch is split and each request tried alone on that rung.
- A batch of several requests that fails (RungFailure) is tried request by request on the same rung. If the rung
  answers some, the ones it still fails are to blame (RequestError "the model could not compute this request:
  ...") and nothing is counted; if it fails every one alone, the rung is at fault: one failure is counted and
  the batch goes on to the next rung.
- A request that fails alone on a rung counts against that rung only once a later rung answers it. If no rung
  answers it, it is the request's fault (RequestError, nothing counted) when every rung that failed it has
  answered other requests since its last counted failure (an in-process rung's warm-up at load counts);
  otherwise nothing shows those rungs work: NoRungAnswered (INTERNAL), one failure counted against each.

A rung the shadow found drifting from FP32 (shadow.py) is demoted: skipped like an open breaker, but until
restored (a reload or a rebuild loads a new router; a probation, where the spec sets one). The last rung is never
demoted: something must answer.

Counts (in `tally`): tritonforge_router_{requests,failures,fallbacks}_total; gauges() gives
tritonforge_router_breaker_open, tritonforge_router_rung_absent and tritonforge_router_rung_demoted per rung.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import metric_names as m
from .batching import Batch, concat, group_by_shape, split
from .breaker import CircuitBreaker
from .errors import RequestError, RungAbsent, RungFailure
from .tally import Labels, Tally

# on_state(rung, state, reason): a rung found not loaded, loaded again, or its breaker opened.
OnRungState = Callable[[str, str, str], None]


class Rung(Protocol):
    """What the router calls (BlsRung, InProcessRung; fakes in tests)."""

    @property
    def name(self) -> str: ...

    def call(self, batch: Batch) -> Batch: ...

    def ready(self) -> bool: ...


class NoRungAnswered(Exception):
    """No rung answered this request and not every rung that failed it is known to work (a server-side fault:
    INTERNAL)."""


# What one request gets from the router: its outputs, or the error it is answered with.
Result = Batch | RequestError | NoRungAnswered
# What one request met on one rung.
Outcome = Batch | RequestError | RungAbsent | RungFailure


@dataclass
class Routed:
    """What the requests of one execute get (`results`, by request index) and which rung answered each answered
    one (`rungs`)."""

    results: dict[int, Result] = field(default_factory=dict)
    rungs: dict[int, str] = field(default_factory=dict)


def _could_not_compute(errors: Iterable[str]) -> RequestError:
    return RequestError("the model could not compute this request: " + " | ".join(errors))


class Router:
    """`rungs`: objects with a `name`, `call(batch) -> outputs` (raising RequestError, RungAbsent or RungFailure),
    `ready() -> bool` (for probing an absent rung) and optionally `warmed` (True once it answered a warm-up at
    load), in the order to try them."""

    def __init__(
        self,
        rungs: Iterable[Rung],
        breaker_failures: int,
        breaker_seconds: float,
        tally: Tally,
        labels: Mapping[str, str],
        on_state: OnRungState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rungs = list(rungs)
        self.breakers = {r.name: CircuitBreaker(breaker_failures, breaker_seconds, clock) for r in self.rungs}
        self.absent = {r.name: False for r in self.rungs}
        self.demoted: dict[str, float] = {}  # rung -> when it was demoted (monotonic clock)
        self.clock = clock
        # whether each rung has answered a request since its last counted failure (its warm-up counts)
        self.answered = {r.name: bool(getattr(r, "warmed", False)) for r in self.rungs}
        self.tally, self.labels = tally, dict(labels)
        self.on_state: OnRungState = on_state or (lambda rung, state, reason: None)

    def _candidates(self) -> list[Rung]:
        present = [r for r in self.rungs if not self.absent[r.name]] or self.rungs
        trusted = [r for r in present if r.name not in self.demoted] or present
        return [r for r in trusted if self.breakers[r.name].allow()] or trusted

    def _first(self) -> str:
        """The rung that answers when all is well: the first loaded one not demoted."""
        return next((r.name for r in self.rungs if not self.absent[r.name] and r.name not in self.demoted), self.rungs[0].name)

    # ---- the requests of one execute ---------------------------------------------------------------
    def route_requests(self, arrays_per_request: Sequence[Batch], indices: Iterable[int]) -> dict[int, Result]:
        """{request index: outputs or the exception that request gets} for the requests at `indices`; requests
        of one shape go as one batch."""
        return self.route(arrays_per_request, indices).results

    def route(self, arrays_per_request: Sequence[Batch], indices: Iterable[int]) -> Routed:
        """As route_requests, and which rung answered each request."""
        routed = Routed()
        for group in group_by_shape(arrays_per_request, indices):
            self._route_group(arrays_per_request, group, routed)
        return routed

    def _route_group(self, arrays: Sequence[Batch], group: Sequence[int], routed: Routed) -> None:
        results = routed.results
        todo = list(group)
        errors: dict[int, list[str]] = {i: [] for i in group}  # "rung: what it said", per request
        failed_by: dict[int, list[Rung]] = {i: [] for i in group}  # the rungs that failed each request, counted or not
        uncounted: dict[int, list[tuple[Rung, str]]] = {
            i: [] for i in group
        }  # (rung, error) that failed it alone, not counted yet
        for rung in self._candidates():
            if not todo:
                break
            outcomes = self._on_rung(rung, arrays, todo)
            answers = {i: v for i, v in outcomes.items() if isinstance(v, dict)}
            failed = [i for i in todo if isinstance(outcomes[i], RungFailure)]
            absent = [i for i in todo if isinstance(outcomes[i], RungAbsent)]
            if absent:
                self._set_absent(rung, True, str(outcomes[absent[0]]))
                for i in absent:
                    errors[i].append(f"{rung.name}: not loaded")
            if answers:
                self._answered(rung, len(answers))
                results.update(answers)
                routed.rungs.update(dict.fromkeys(answers, rung.name))
                late = {r.name: (r, e) for i in answers for r, e in uncounted[i]}  # a later rung answered these
                for r, e in late.values():
                    self._failure(r, e)
            results.update({i: e for i, e in outcomes.items() if isinstance(e, RequestError)})
            for i in failed:
                errors[i].append(f"{rung.name}: {outcomes[i]}")
                if answers:  # the rung answers the others of its batch: these requests are at fault
                    results[i] = _could_not_compute(errors[i][-1:])
                else:
                    failed_by[i].append(rung)
            if failed and not answers:
                if len(failed) > 1:  # it failed every request alone: the rung is at fault for the batch
                    self._failure(rung, str(outcomes[failed[0]]))
                else:
                    uncounted[failed[0]].append((rung, str(outcomes[failed[0]])))
            todo = [i for i in todo if i not in results]
        at_fault: dict[str, tuple[Rung, str]] = {}
        for i in todo:  # no rung answered these
            if failed_by[i] and all(self.answered[r.name] for r in failed_by[i]):
                results[i] = _could_not_compute(errors[i])
            else:
                results[i] = NoRungAnswered("no variant could answer: " + " | ".join(errors[i]))
                at_fault.update({r.name: (r, e) for r, e in uncounted[i]})
        for r, e in at_fault.values():
            self._failure(r, e)

    def _on_rung(self, rung: Rung, arrays: Sequence[Batch], todo: list[int]) -> dict[int, Outcome]:
        """{request: its outputs, or the RequestError, RungAbsent or RungFailure it met} on `rung`: `todo` as one
        batch, and if that fails, each request alone (not after the rung is found absent)."""
        try:
            return dict(zip(todo, self._call(rung, arrays, todo), strict=True))
        except (RequestError, RungAbsent, RungFailure) as e:
            if len(todo) == 1 or isinstance(e, RungAbsent):
                return dict.fromkeys(todo, e)
        outcomes: dict[int, Outcome] = {}
        for k, i in enumerate(todo):
            try:
                outcomes[i] = self._call(rung, arrays, [i])[0]
            except RungAbsent as e:
                outcomes.update(dict.fromkeys(todo[k:], e))
                break
            except (RequestError, RungFailure) as e:
                outcomes[i] = e
        return outcomes

    @staticmethod
    def _call(rung: Rung, arrays: Sequence[Batch], indices: Sequence[int]) -> list[Batch]:
        batch, sizes = concat(arrays, indices)
        return split(rung.call(batch), sizes)

    def _answered(self, rung: Rung, requests: int) -> None:
        self.breakers[rung.name].success()
        self.answered[rung.name] = True
        self._set_absent(rung, False)
        self.tally.add(m.ROUTER_REQUESTS, requests, variant=rung.name, **self.labels)
        if rung.name != self._first():
            self.tally.add(m.ROUTER_FALLBACKS, requests, **self.labels)

    def _failure(self, rung: Rung, reason: str) -> None:
        self.answered[rung.name] = False
        if self.breakers[rung.name].failure():
            self.on_state(rung.name, "breaker open", reason)
        self.tally.add(m.ROUTER_FAILURES, variant=rung.name, **self.labels)

    # ---- rungs not loaded --------------------------------------------------------------------------
    def _set_absent(self, rung: Rung, absent: bool, reason: str = "") -> None:
        if self.absent[rung.name] != absent:
            self.absent[rung.name] = absent
            self.on_state(rung.name, "not loaded" if absent else "loaded", reason)

    # ---- rungs that drift from FP32 ----------------------------------------------------------------
    def demote(self, rung: str, reason: str) -> bool:
        """Skip `rung` from now on (the shadow found it breaking the gate); False if it is the last rung (never
        demoted) or already demoted."""
        if rung in self.demoted or rung == self.rungs[-1].name or rung not in self.breakers:
            return False
        self.demoted[rung] = self.clock()
        self.on_state(rung, "demoted", reason)
        return True

    def restore(self, rung: str, reason: str) -> None:
        """Serve a demoted rung again (its probation is over)."""
        if self.demoted.pop(rung, None) is not None:
            self.on_state(rung, "restored", reason)

    # ---- off the request path ----------------------------------------------------------------------
    def probe_absent(self) -> None:
        """Ask every absent rung whether it is loaded now."""
        for rung in self.rungs:
            if self.absent[rung.name]:
                try:
                    ready = rung.ready()
                except Exception:
                    ready = False
                if ready:
                    self._set_absent(rung, False)

    def gauges(self) -> dict[tuple[str, Labels], float]:
        """{(metric, labels): value} as they stand now, labelled by `variant`: a breaker reads 0 once its open period
        has passed."""
        out: dict[tuple[str, Labels], float] = {}
        for rung in self.rungs:
            variant = (("variant", rung.name),)
            out[(m.ROUTER_BREAKER_OPEN, variant)] = 1 if self.breakers[rung.name].skipping else 0
            out[(m.ROUTER_RUNG_ABSENT, variant)] = 1 if self.absent[rung.name] else 0
            out[(m.ROUTER_RUNG_DEMOTED, variant)] = 1 if rung.name in self.demoted else 0
        return out
