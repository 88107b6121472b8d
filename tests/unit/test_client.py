"""Client-side logic without a server: input checks against metadata, endpoint rotation, retry planning."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from tritonforge.client.endpoints import AttemptPlan, EndpointPool, RetryPolicy, is_retryable, pool_and_policy, translate
from tritonforge.client.errors import DeadlineExceeded, EndpointsUnavailable, InferenceFailed, InputError, ModelNotFound
from tritonforge.client.model_info import ModelInfo

META = {"name": "enc", "versions": ["1"], "inputs": [
    {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
    {"name": "mask", "datatype": "INT64", "shape": [-1, -1]},
    {"name": "scale", "datatype": "FP32", "shape": [-1, 2]},
], "outputs": [{"name": "emb", "datatype": "FP32", "shape": [-1, 384]}]}
INFO = ModelInfo.from_json(META, {"max_batch_size": 8})
TEXT = ModelInfo.from_json({"name": "t", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
                            "outputs": []}, {"max_batch_size": 4})


def good(batch=2, seq=5):
    return {"ids": np.ones((batch, seq), np.int64), "mask": np.ones((batch, seq), np.int64),
            "scale": np.ones((batch, 2), np.float32)}


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
    pool, policy = pool_and_policy(["a", "b"], timeout=3.0, retries=3, backoff=0.0, max_backoff=0.0,
                                   attempt_timeout=None, cooldown=1.0)
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
