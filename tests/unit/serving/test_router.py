"""The router's decisions, with rungs that answer, fail, are absent, or refuse a request's input."""

from __future__ import annotations

import numpy as np
import pytest

from tritonforge.serving import metric_names as m
from tritonforge.serving.errors import RequestError, RungAbsent, RungFailure
from tritonforge.serving.router import NoRungAnswered, Router
from tritonforge.serving.tally import Tally


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Rung:
    """Answers x * factor; `mode` decides what it does instead. A batch holding a `poison` value fails with
    RungFailure as ONNX Runtime's RUNTIME_EXCEPTION does for an input it cannot compute, though the rung is fine."""

    def __init__(self, name, factor=1.0, mode="ok", poison=(), warmed=False):
        self.name, self.factor, self.mode, self.calls, self.loaded = name, factor, mode, 0, True
        self.poison, self.warmed = list(poison), warmed

    def call(self, batch):
        self.calls += 1
        x = batch["x"]
        if self.mode == "absent":
            raise RungAbsent(f"Model '{self.name}' is not ready")
        if self.mode == "fail":
            raise RungFailure("CUDA error: an illegal memory access was encountered")
        if np.isin(x, self.poison).any():
            raise RungFailure("RUNTIME_EXCEPTION: Attempting to broadcast an axis by a dimension other than 1. 10 by 12")
        if (x < 0).any():  # what a Gather out of its table does: the request's fault
            raise RequestError(f"{self.name}: index out of range")
        return {"y": x * self.factor}

    def ready(self):
        return self.loaded


def _router(*rungs, failures=2, seconds=10.0, clock=None):
    states = []
    router = Router(
        rungs, failures, seconds, Tally(), {"model": "m"}, on_state=lambda *a: states.append(a), clock=clock or Clock()
    )
    return router, states


def _requests(*rows):
    return [{"x": np.array([[float(v)]], dtype=np.float32)} for v in rows]


def test_first_rung_that_answers_serves_the_whole_batch():
    a, b = Rung("a", 2.0), Rung("b", 3.0)
    router, _ = _router(a, b)
    results = router.route_requests(_requests(1, 2, 3), [0, 1, 2])
    assert [float(results[i]["y"][0, 0]) for i in range(3)] == [2.0, 4.0, 6.0]
    assert a.calls == 1 and b.calls == 0  # one batch, one call


def test_absent_rung_is_skipped_without_a_failure_and_logged_once():
    a, b = Rung("a", mode="absent"), Rung("b", 3.0)
    router, states = _router(a, b)
    for _ in range(5):
        router.route_requests(_requests(1), [0])
    assert a.calls == 1  # found absent once, never called again on the request path
    assert router.tally.total(m.ROUTER_FAILURES) == 0
    assert router.breakers["a"].opened == 0
    assert states == [("a", "not loaded", "Model 'a' is not ready")]
    assert router.gauges()[(m.ROUTER_RUNG_ABSENT, (("variant", "a"),))] == 1
    assert router.gauges()[(m.ROUTER_BREAKER_OPEN, (("variant", "a"),))] == 0
    a.mode = "ok"
    router.probe_absent()  # off the request path: loaded now
    assert router.route_requests(_requests(1), [0])[0]["y"][0, 0] == 1.0 and a.calls == 2
    assert states[-1] == ("a", "loaded", "")
    assert router.tally.total(m.ROUTER_FALLBACKS) == 0  # fallbacks count from the first loaded rung


def test_failing_rung_opens_its_breaker_and_the_gauge_reads_zero_once_it_has_passed():
    clock = Clock()
    a, b = Rung("a", mode="fail"), Rung("b", 3.0)
    router, states = _router(a, b, failures=2, seconds=10.0, clock=clock)
    for _ in range(4):
        assert router.route_requests(_requests(1), [0])[0]["y"][0, 0] == 3.0
    assert a.calls == 2 and router.breakers["a"].opened == 1  # skipped while open
    assert router.gauges()[(m.ROUTER_BREAKER_OPEN, (("variant", "a"),))] == 1
    assert router.tally.total(m.ROUTER_FAILURES, variant="a") == 2
    assert router.tally.total(m.ROUTER_FALLBACKS) == 4
    clock.t = 10.5
    assert router.gauges()[(m.ROUTER_BREAKER_OPEN, (("variant", "a"),))] == 0  # open period over: not skipped
    a.mode = "ok"
    router.route_requests(_requests(1), [0])  # the probe succeeds and closes it
    assert a.calls == 3 and router.breakers["a"].open_until == 0.0
    assert ("a", "breaker open", "CUDA error: an illegal memory access was encountered") in states


def test_every_breaker_open_tries_every_rung_anyway():
    a, b = Rung("a", mode="fail"), Rung("b", mode="fail")
    router, _ = _router(a, b, failures=1)
    with pytest.raises(NoRungAnswered):
        raise router.route_requests(_requests(1), [0])[0]
    b.mode = "ok"
    assert router.route_requests(_requests(1), [0])[0]["y"][0, 0] == 1.0


def test_a_bad_request_fails_alone_and_never_counts_against_a_rung():
    """Three malformed requests mixed into good traffic, then the primary dies: every good request is answered
    (on the old router they had opened the fallback's breaker and 3 of 8 good requests failed)."""
    a, b = Rung("a", 2.0), Rung("b", 3.0)
    router, _ = _router(a, b, failures=3)
    for _ in range(3):
        results = router.route_requests(_requests(1, -1, 2), [0, 1, 2])
        assert isinstance(results[1], RequestError)
        assert results[0]["y"][0, 0] == 2.0 and results[2]["y"][0, 0] == 4.0
    assert router.tally.total(m.ROUTER_FAILURES) == 0
    assert router.breakers["a"].consecutive == 0 and router.breakers["b"].consecutive == 0
    a.mode = "fail"
    results = router.route_requests(_requests(*range(1, 9)), list(range(8)))
    assert all(float(results[i]["y"][0, 0]) == 3.0 * (i + 1) for i in range(8))


def test_nothing_answers_is_a_server_fault_for_that_request_only():
    a = Rung("a", mode="fail")
    router, _ = _router(a)
    results = router.route_requests(_requests(1, 2), [0, 1])
    assert all(isinstance(results[i], NoRungAnswered) for i in (0, 1))
    assert "no variant could answer: a: CUDA error" in str(results[0])


def test_requests_of_different_shapes_go_as_separate_batches():
    a = Rung("a", 2.0)
    router, _ = _router(a)
    reqs = [{"x": np.ones((1, 1), np.float32)}, {"x": np.ones((2, 3), np.float32)}, {"x": np.ones((1, 1), np.float32)}]
    results = router.route_requests(reqs, [0, 1, 2])
    assert results[1]["y"].shape == (2, 3) and a.calls == 2


def test_a_request_the_rung_fails_alone_among_answered_ones_is_its_own_fault():
    """The rung fails the batch for one request's sake: that request gets INVALID_ARG, the others are answered by
    the same rung, and nothing counts against it however often it happens."""
    a, b = Rung("a", 2.0, poison=[13]), Rung("b", 3.0)
    router, states = _router(a, b, failures=2)
    for _ in range(10):
        results = router.route_requests(_requests(1, 13, 2), [0, 1, 2])
        assert isinstance(results[1], RequestError) and not isinstance(results[1], NoRungAnswered)
        assert str(results[1]).startswith("the model could not compute this request: a: RUNTIME_EXCEPTION")
        assert results[0]["y"][0, 0] == 2.0 and results[2]["y"][0, 0] == 4.0  # a answered them: factor 2
    assert b.calls == 0 and a.calls == 10 * 4  # the batch, then each request alone
    assert router.tally.total(m.ROUTER_FAILURES) == 0
    assert router.tally.total(m.ROUTER_REQUESTS, variant="a") == 20
    assert router.breakers["a"].consecutive == 0 and router.breakers["a"].opened == 0 and not states


def test_a_rung_that_fails_every_request_of_a_batch_alone_is_at_fault_once_per_batch():
    a, b = Rung("a", mode="fail"), Rung("b", 3.0)
    router, states = _router(a, b, failures=3)
    for n in range(1, 4):
        results = router.route_requests(_requests(1, 2, 3), [0, 1, 2])
        assert [float(results[i]["y"][0, 0]) for i in range(3)] == [3.0, 6.0, 9.0]  # the next rung answered
        assert router.tally.total(m.ROUTER_FAILURES, variant="a") == n  # one per batch
    assert router.breakers["a"].opened == 1 and states == [
        ("a", "breaker open", "CUDA error: an illegal memory access was encountered")
    ]
    calls = a.calls
    router.route_requests(_requests(1, 2, 3), [0, 1, 2])
    assert a.calls == calls  # skipped while open
    assert router.tally.total(m.ROUTER_FALLBACKS) == 12


def test_a_lone_request_every_healthy_rung_fails_is_its_own_fault():
    """The issue: four such requests opened the healthy in-process rung's breaker and each got INTERNAL."""
    a, b = Rung("a", 2.0, poison=[13]), Rung("b", 3.0, poison=[13], warmed=True)  # b: answered its warm-up
    router, states = _router(a, b, failures=3)
    assert router.route_requests(_requests(1), [0])[0]["y"][0, 0] == 2.0  # a answered a request
    for _ in range(6):
        result = router.route_requests(_requests(13), [0])[0]
        assert isinstance(result, RequestError)
        assert str(result) == (
            "the model could not compute this request: a: RUNTIME_EXCEPTION: Attempting to "
            "broadcast an axis by a dimension other than 1. 10 by 12 | b: RUNTIME_EXCEPTION: "
            "Attempting to broadcast an axis by a dimension other than 1. 10 by 12"
        )
    assert router.tally.total(m.ROUTER_FAILURES) == 0
    assert router.breakers["a"].consecutive == 0 and router.breakers["b"].consecutive == 0 and not states
    assert router.route_requests(_requests(2), [0])[0]["y"][0, 0] == 4.0


def test_a_lone_request_failed_by_a_rung_not_known_to_work_is_a_server_fault():
    a, b = Rung("a", 2.0, poison=[13]), Rung("b", 3.0, poison=[13])  # b never answered anything, no warm-up
    router, _ = _router(a, b, failures=3)
    assert router.route_requests(_requests(1), [0])[0]["y"][0, 0] == 2.0
    result = router.route_requests(_requests(13), [0])[0]
    assert isinstance(result, NoRungAnswered) and str(result).startswith("no variant could answer: a: RUNTIME")
    assert router.tally.total(m.ROUTER_FAILURES, variant="a") == 1
    assert router.tally.total(m.ROUTER_FAILURES, variant="b") == 1

    c = Rung("c", poison=[13])  # one rung, as in the runner model
    router, _ = _router(c, failures=3)
    assert isinstance(router.route_requests(_requests(13), [0])[0], NoRungAnswered)
    assert router.route_requests(_requests(1), [0])[0]["y"][0, 0] == 1.0
    assert isinstance(router.route_requests(_requests(13), [0])[0], RequestError)  # it answered since
    results = router.route_requests(_requests(13, 13), [0, 1])  # it fails every request of a batch: counted
    assert all(isinstance(results[i], NoRungAnswered) for i in (0, 1))
    assert isinstance(router.route_requests(_requests(13), [0])[0], NoRungAnswered)  # not answered since then
    assert router.tally.total(m.ROUTER_FAILURES, variant="c") == 3


def test_a_lone_request_failed_alone_counts_only_once_a_later_rung_answers_it():
    a, b = Rung("a", 2.0, poison=[13], warmed=True), Rung("b", 3.0)
    router, _ = _router(a, b, failures=3)
    assert router.route_requests(_requests(13), [0])[0]["y"][0, 0] == 39.0  # b answered what a failed
    assert router.tally.total(m.ROUTER_FAILURES, variant="a") == 1
    assert router.breakers["a"].consecutive == 1 and router.answered["a"] is False


def test_a_demoted_rung_is_skipped_until_restored_and_shown_in_the_gauges():
    a, b = Rung("a", 2.0), Rung("b", 3.0)
    router, states = _router(a, b)
    assert router.demote("a", "drifted") and not router.demote("a", "again")  # once
    routed = router.route(_requests(1, 2), [0, 1])
    assert routed.rungs == {0: "b", 1: "b"} and a.calls == 0
    assert routed.results[0]["y"][0, 0] == 3.0
    assert router.tally.total(m.ROUTER_FALLBACKS) == 0  # b is the first rung that should answer now
    assert router.gauges()[(m.ROUTER_RUNG_DEMOTED, (("variant", "a"),))] == 1
    router.restore("a", "probation over")
    assert router.route(_requests(1), [0]).rungs == {0: "a"}
    assert [s[:2] for s in states] == [("a", "demoted"), ("a", "restored")]


def test_the_last_rung_is_never_demoted():
    router, states = _router(Rung("a"), Rung("b"))
    assert not router.demote("b", "drifted") and states == []
    assert router.route(_requests(1), [0]).rungs == {0: "a"}
