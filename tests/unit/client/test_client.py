"""Client-side logic without a server: input checks against metadata, endpoint rotation, retry planning."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from tritonforge.client import AsyncClient, Client
from tritonforge.client.endpoints import (
    DEFAULT_TIMEOUT,
    AttemptPlan,
    EndpointPool,
    RetryPolicy,
    is_retryable,
    pool_and_policy,
    translate,
)
from tritonforge.client.errors import (
    ClientError,
    DeadlineExceeded,
    EndpointsUnavailable,
    InferenceFailed,
    InputError,
    InvalidEndpoint,
    ModelNotFound,
)
from tritonforge.client.model_info import ModelInfo

META = {
    "name": "enc",
    "versions": ["1"],
    "inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "mask", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "scale", "datatype": "FP32", "shape": [-1, 2]},
    ],
    "outputs": [{"name": "emb", "datatype": "FP32", "shape": [-1, 384]}],
}
INFO = ModelInfo.from_json(META, {"max_batch_size": 8})
TEXT = ModelInfo.from_json(
    {"name": "t", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}], "outputs": []}, {"max_batch_size": 4}
)


def good(batch=2, seq=5):
    return {
        "ids": np.ones((batch, seq), np.int64),
        "mask": np.ones((batch, seq), np.int64),
        "scale": np.ones((batch, 2), np.float32),
    }


def test_good_inputs_pass():
    out = INFO.prepare(good())
    assert set(out) == {"ids", "mask", "scale"} and INFO.max_batch_size == 8


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(idz=d.pop("ids")), "has no input 'idz'; its inputs are: ids, mask, scale"),
        (lambda d: d.pop("mask"), "input 'mask' is missing"),
        (lambda d: d.update(scale=d["scale"].astype(np.float64)), "input 'scale': dtype float64 does not match the model's FP32"),
        (lambda d: d.update(scale=np.ones((2, 3), np.float32)), "input 'scale': dim 1 is 3, the model expects 2"),
        (lambda d: d.update(ids=np.ones((2,), np.int64)), "input 'ids': shape [2] has rank 1"),
        (lambda d: d.update(**good(batch=9)), "batch size 9 exceeds max_batch_size 8"),
        (lambda d: d.update(**good(batch=0)), "empty batch"),
        (lambda d: d.update(scale=np.array([[1, np.nan], [1, 1]], np.float32)), "input 'scale': 1 value(s) are NaN or Inf"),
        (lambda d: d.update(scale=np.array([[1, np.inf], [-np.inf, 1]], np.float32)), "2 value(s) are NaN or Inf"),
        (lambda d: d.update(mask=np.ones((3, 5), np.int64)), "disagree on batch size"),
        (lambda d: d.update(scale=[[1.0, 2.0]]), "expected a numpy array"),
    ],
)
def test_bad_inputs_are_named(change, message):
    inputs = good()
    change(inputs)
    with pytest.raises(InputError) as err:
        INFO.prepare(inputs)
    assert message in str(err.value)
    assert "enc" in str(err.value)


def test_strings():
    assert TEXT.prepare({"text": np.array([["hi"], ["there"]])})["text"].dtype == object
    assert TEXT.prepare({"text": [[b"bytes"]]})["text"][0, 0] == b"bytes"
    with pytest.raises(InputError, match="takes strings"):
        TEXT.prepare({"text": np.ones((1, 1), np.float32)})
    with pytest.raises(InputError, match="found a int"):
        TEXT.prepare({"text": np.array([[3]], dtype=object)})


def test_nonfinite_check_can_be_disabled():
    inputs = good()
    inputs["scale"][0, 0] = np.nan
    assert np.isnan(INFO.prepare(inputs, reject_nonfinite=False)["scale"][0, 0])


def test_pool_round_robin_and_cooldown():
    pool = EndpointPool(["a", "b", "c"], cooldown=60)
    assert [pool.order()[0] for _ in range(4)] == ["a", "b", "c", "a"]
    pool.mark_down("b")
    assert pool.order() == ["c", "a", "b"]  # b's turn, but it sits out (kept as a last resort)
    assert pool.order() == ["c", "a", "b"]
    pool.mark_up("b")
    assert pool.order() == ["a", "b", "c"]
    assert pool.order() == ["b", "c", "a"]


def test_a_failing_endpoint_sits_out_longer_each_time_and_one_caller_probes_it(monkeypatch):
    import tritonforge.client.endpoints as endpoints

    now = [100.0]
    monkeypatch.setattr(endpoints.time, "monotonic", lambda: now[0])
    pool = EndpointPool(["a", "b"], cooldown=1.0, max_cooldown=4.0)
    pool.mark_down("a")
    assert pool.order()[0] == "b" and pool.order()[0] == "b"
    now[0] += 1.01
    assert pool.order()[0] == "a"  # its time is up: this caller probes it ...
    assert pool.order() == ["b", "a"] and pool.order() == ["b", "a"]  # ... the others keep skipping it
    pool.mark_down("a")  # the probe failed: 2 s now
    now[0] += 1.5
    assert pool.order()[0] == "b"
    now[0] += 0.6
    assert pool.order()[0] == "a"
    for _ in range(5):
        pool.mark_down("a")
    assert pool._down_until["a"] - now[0] == pytest.approx(4.0)  # capped
    pool.mark_up("a")
    assert not pool.is_down("a")


def _exc(status, msg="boom"):
    return InferenceServerException(msg=msg, status=status)


def test_error_classification():
    assert is_retryable(_exc("StatusCode.UNAVAILABLE"))
    assert is_retryable(_exc("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"))  # an attempt that hung: next endpoint
    assert not is_retryable(_exc("StatusCode.INVALID_ARGUMENT"))
    assert isinstance(translate(_exc("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"), "m", "u"), DeadlineExceeded)
    assert isinstance(translate(_exc("StatusCode.NOT_FOUND", "Request for unknown model: 'm'"), "m", "u"), ModelNotFound)
    err = translate(_exc("StatusCode.INVALID_ARGUMENT", "bad shape"), "m", "host:1")
    assert isinstance(err, InferenceFailed) and "model 'm' at host:1: bad shape" in str(err)


def test_attempt_plan_moves_to_next_endpoint_then_gives_up():
    plan = AttemptPlan(EndpointPool(["a", "b"]), RetryPolicy(retries=1, backoff=0.0), timeout=5, model="m")
    tried, sleeps = [], 0
    for step in plan:
        if step.sleep or step.url == "":
            sleeps += 1
            continue
        tried.append(step.url)
        plan.failed(step.url, _exc("StatusCode.UNAVAILABLE"))
    assert sorted(tried) == ["a", "a", "b", "b"] and sleeps == 1
    assert isinstance(plan.exhausted(), EndpointsUnavailable)
    plan = AttemptPlan(EndpointPool(["a"]), RetryPolicy(), timeout=5, model="m")
    step = next(iter(plan))
    with pytest.raises(InferenceFailed):
        plan.failed(step.url, _exc("StatusCode.INVALID_ARGUMENT"))


def test_each_attempt_gets_a_share_of_the_deadline():
    pool, policy = pool_and_policy(
        ["a", "b"], timeout=3.0, retries=3, backoff=0.0, max_backoff=0.0, attempt_timeout=None, cooldown=1.0
    )
    assert policy.attempt_timeout == pytest.approx(1.0)  # two endpoints and one retry share 3 s
    plan = AttemptPlan(pool, policy, timeout=3.0, model="m")
    first = next(iter(plan))
    assert first.left == pytest.approx(1.0, abs=0.01)
    plan.failed(first.url, _exc("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"))
    assert pool.is_down(first.url)
    plan = AttemptPlan(pool, RetryPolicy(attempt_timeout=10.0), timeout=0.5, model="m")
    assert next(iter(plan)).left <= 0.5  # never more than the deadline left


def test_running_out_of_time_on_timeouts_is_a_deadline_error():
    plan = AttemptPlan(EndpointPool(["a"]), RetryPolicy(retries=0, attempt_timeout=0.01), timeout=0.01, model="m")
    for step in plan:
        time.sleep(0.02)
        plan.failed(step.url, _exc("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"))
    assert isinstance(plan.exhausted(), DeadlineExceeded)


# ---- replicas that drain or lack the model, probes that fail, the default deadline -------------------
DRAINING = "Request for unknown model: 'm' has no available versions"  # a Triton draining on SIGTERM
NOT_LOADED = "Request for unknown model: 'm' is not found"  # a Triton that never loaded the model


class _FakeTransport:
    """tritonclient's module as the clients use it, without a channel: each endpoint is a name."""

    class InferenceServerClient:
        def __init__(self, url, ssl=False):
            self.url = url

        def close(self):
            pass


class FakeClient(Client):
    transport = _FakeTransport


class FakeAsyncClient(AsyncClient):
    transport = _FakeTransport


def _answers(script):
    """fn(c, left) for Client._call: endpoint -> an exception to raise, or else its name back; every call
    recorded as (endpoint, left)."""
    calls = []

    def fn(c, left):
        calls.append((c.url, left))
        outcome = script.get(c.url)
        if isinstance(outcome, BaseException):
            raise outcome
        return c.url

    return fn, calls


def test_not_found_moves_the_request_to_the_next_endpoint_within_the_same_deadline():
    with FakeClient(["a", "b"], timeout=5.0, retries=0, cooldown=60) as client:
        for message in (DRAINING, NOT_LOADED):
            fn, calls = _answers({"a": _exc("StatusCode.NOT_FOUND", message)})
            client.pool.mark_up("a")
            client.pool._next = 0  # a's turn
            assert client._call("m", fn, None) == "b"
            assert [url for url, _ in calls] == ["a", "b"]
            assert calls[1][1] <= calls[0][1] <= 5.0  # one deadline for both tries
            assert client.pool.is_down("a") and not client.pool.is_probing("a")  # a sits out its back-off
        fn, calls = _answers({"a": _exc("StatusCode.UNAVAILABLE", "Server is stopping")})
        client.pool.mark_up("a")
        client.pool._next = 0
        assert client._call("m", fn, None) == "b" and client.pool.is_down("a")


def test_model_not_found_only_when_every_endpoint_says_so():
    with FakeClient(["a", "b", "c"], timeout=5.0, cooldown=60) as client:
        fn, calls = _answers({u: _exc("StatusCode.NOT_FOUND", NOT_LOADED) for u in "abc"})
        started = time.monotonic()
        with pytest.raises(ModelNotFound) as err:
            client._call("m", fn, None)
        assert sorted(url for url, _ in calls) == ["a", "b", "c"]  # each asked once, no retry rounds
        assert time.monotonic() - started < 1.0
        assert "not served by any endpoint" in str(err.value) and all(u in str(err.value) for u in "abc")
    with FakeClient(["a", "b"], timeout=5.0, retries=1, backoff=0.0, cooldown=60) as client:
        # one endpoint lacks the model, the other is unreachable: not "no such model", the endpoints are down
        fn, _ = _answers(
            {"a": _exc("StatusCode.NOT_FOUND", NOT_LOADED), "b": _exc("StatusCode.UNAVAILABLE", "failed to connect")}
        )
        with pytest.raises(EndpointsUnavailable):
            client._call("m", fn, None)
    with FakeClient("a", timeout=5.0) as client:  # one endpoint: as before, at once
        fn, calls = _answers({"a": _exc("StatusCode.NOT_FOUND", NOT_LOADED)})
        with pytest.raises(ModelNotFound):
            client._call("m", fn, None)
        assert len(calls) == 1


def test_request_errors_stay_final_and_are_never_tried_elsewhere():
    assert is_retryable(_exc("StatusCode.NOT_FOUND", NOT_LOADED)) and is_retryable(_exc("StatusCode.NOT_FOUND", DRAINING))
    for status in ("StatusCode.INVALID_ARGUMENT", "StatusCode.INTERNAL", "StatusCode.RESOURCE_EXHAUSTED"):
        with FakeClient(["a", "b"], timeout=5.0) as client:
            fn, calls = _answers(
                {"a": _exc(status, "unexpected shape for input 'image'"), "b": _exc(status, "unexpected shape for input 'image'")}
            )
            with pytest.raises(InferenceFailed):
                client._call("m", fn, None)
            assert len(calls) == 1 and not client.pool.is_down(calls[0][0])


def _clock(monkeypatch):
    import tritonforge.client.endpoints as endpoints

    now = [100.0]
    monkeypatch.setattr(endpoints.time, "monotonic", lambda: now[0])
    return now


@pytest.mark.parametrize(
    "probe_error",
    [
        _exc("StatusCode.NOT_FOUND", DRAINING),  # the rolling restart: draining, then gone, then back
        _exc("StatusCode.UNAVAILABLE", "failed to connect to all addresses"),
        _exc("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"),
    ],
)
def test_a_probe_that_fails_sends_the_endpoint_back_to_its_back_off_never_stuck_probing(monkeypatch, probe_error):
    now = _clock(monkeypatch)
    with FakeClient(["a", "b"], timeout=5.0, cooldown=1.0, max_cooldown=4.0) as client:
        # an in-flight request answered "Server is stopping" sidelines a
        client.pool._next = 0
        fn, _ = _answers({"a": _exc("StatusCode.UNAVAILABLE", "Server is stopping")})
        assert client._call("m", fn, None) == "b" and client.pool.is_down("a")
        now[0] += 1.01
        fn, calls = _answers({"a": probe_error})
        assert client._call("m", fn, None) == "b" and calls[0][0] == "a"  # the probe, then b
        assert client.pool.is_down("a") and not client.pool.is_probing("a")
        assert client.pool._down_until["a"] - now[0] == pytest.approx(2.0)  # the next step of its back-off
        fn, calls = _answers({})
        assert [client._call("m", fn, None) for _ in range(4)] == ["b"] * 4  # sitting out
        now[0] += 2.01
        assert client._call("m", fn, None) == "a"  # probed again once its time is up: back
        assert not client.pool.is_down("a")
        assert sorted(client._call("m", fn, None) for _ in range(4)) == ["a", "a", "b", "b"]


def test_a_probe_ended_by_a_request_error_or_an_unexpected_one_is_handed_back(monkeypatch):
    now = _clock(monkeypatch)
    with FakeClient(["a", "b"], timeout=5.0, cooldown=1.0) as client:
        for error, raised in (
            (_exc("StatusCode.INVALID_ARGUMENT", "bad shape"), InferenceFailed),
            (RuntimeError("a bug in the caller's code"), RuntimeError),
        ):
            client.pool.mark_down("a")
            now[0] += 1.01
            fn, calls = _answers({"a": error})
            with pytest.raises(raised):
                client._call("m", fn, None)
            assert calls[0][0] == "a" and not client.pool.is_probing("a") and client.pool.is_down("a")
            now[0] += 1.01
            fn, calls = _answers({})
            assert client._call("m", fn, None) == "a"  # probed again, and back
            assert not client.pool.is_down("a")


def test_a_probe_not_reached_before_the_deadline_is_handed_back(monkeypatch):
    now = _clock(monkeypatch)
    pool = EndpointPool(["a", "b"], cooldown=1.0)
    pool.mark_down("a")
    now[0] += 1.01
    plan = AttemptPlan(pool, RetryPolicy(), timeout=1.0, model="m")
    try:
        steps = iter(plan)
        assert next(steps).url == "a" and pool.is_probing("a")
        now[0] += 2.0  # the deadline passes before the probe answers
    finally:
        plan.close()
    assert not pool.is_probing("a") and pool.is_down("a")


def test_a_cancelled_async_call_hands_its_probe_back():
    import asyncio

    async def main():
        client = FakeAsyncClient(["a", "b"], timeout=5.0, cooldown=0.0)
        client.pool.mark_down("a")
        started = asyncio.Event()

        async def hang(c, left):
            started.set()
            await asyncio.sleep(3600)

        task = asyncio.create_task(client._call("m", hang, None))
        await started.wait()
        assert client.pool.is_probing("a")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return client

    client = asyncio.run(main())
    assert not client.pool.is_probing("a") and client.pool.is_down("a")


def test_the_deadline_is_never_unbounded():
    assert DEFAULT_TIMEOUT == 30.0
    for client in (FakeClient(["a", "b"]), FakeClient(["a", "b"], timeout=None), FakeAsyncClient("a", timeout=None)):
        assert client.timeout == DEFAULT_TIMEOUT
        assert client.policy.attempt_timeout is not None and client.policy.attempt_timeout <= DEFAULT_TIMEOUT
    client = FakeClient(["a", "b"], timeout=None)
    fn, calls = _answers({})
    client._call("m", fn, None)  # timeout=None per call: the client's
    assert 0 < calls[0][1] <= DEFAULT_TIMEOUT / 3 + 0.01  # a finite share of the default deadline
    plan = AttemptPlan(EndpointPool(["a"]), RetryPolicy(), timeout=None, model="m")
    assert plan.deadline - time.monotonic() == pytest.approx(DEFAULT_TIMEOUT, abs=0.5)
    assert next(iter(plan)).left <= DEFAULT_TIMEOUT
    big = FakeClient("a", timeout=600)  # a longer deadline is asked for explicitly
    assert big.timeout == 600 and big.policy.attempt_timeout == pytest.approx(300)
    fn, calls = _answers({})
    big._call("m", fn, 900)
    assert calls[0][1] == pytest.approx(300, abs=1)  # per call, within the attempt's share
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            FakeClient("a", timeout=bad)


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize(
    "url, instead",
    [("http://localhost:8000", "'localhost:8001'"), ("https://triton.example.com/v2", "'triton.example.com:8001'")],
)
def test_an_http_url_is_refused_when_the_client_is_made(cls, url, instead):
    with pytest.raises(InvalidEndpoint) as err:
        cls(url)
    assert "gRPC" in str(err.value) and instead in str(err.value) and isinstance(err.value, ClientError | ValueError)
    with pytest.raises(InvalidEndpoint):
        cls(["localhost:8001", url])  # one bad endpoint of several
