"""A rolling restart behind the multi-endpoint client, for real: two local tritonservers on one repository, steady
load through `Client([a, b])`, replica A sent SIGTERM mid-load (Triton unloads its models and answers NOT_FOUND
"has no available versions", then UNAVAILABLE "Server is stopping", while it drains), then started again on the
same ports. And a replica that never loaded the model, beside one that did.

Before the client moved NOT_FOUND to the next endpoint, 1,827 of 19,015 requests failed during A's drain, and
the client never used A again once its probe met NOT_FOUND (the endpoint stayed "probing" for good).
"""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import scaled

from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.client import Client, ModelNotFound
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer
from tritonforge.testing.load import SteadyLoad
from tritonforge.testing.ports import free_ports

THREADS = 4


def _images(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"image": rng.random((1, 64), dtype=np.float32)} for _ in range(n)]


def _replica(repo: Path, models: list[str] | None = None) -> LocalTritonServer:
    """A local server on fixed ports, so that it comes back where the client looks for it after a restart."""
    http, grpc, metrics = free_ports(3)
    return LocalTritonServer(
        repo, http_port=http, grpc_port=grpc, metrics_port=metrics, load_models=["digits"] if models is None else models
    )


def _successes(server: LocalTritonServer, model: str = "digits") -> int:
    """Requests for `model` this server answered since it started (Triton's nv_inference_request_success)."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return int(
        sum(
            float(m.group(1))
            for m in re.finditer(rf'^nv_inference_request_success{{[^}}]*model="{model}"[^}}]*}} (\S+)$', text, re.M)
        )
    )


def _wrong(record, inputs, repo: Path) -> int:
    """Answers that are not their own input's: another input's answer, or none the runner gives it. The runner may
    be a dynamic INT8 variant (whichever the build's timing picked), whose answer depends on the batch the server
    formed, so each is compared with its input's computed alone within 5% of its largest logit, and must be
    nearer to it than to any other input's."""
    reference = OrtModel(Repository(repo).runner_file("digits"), ["logits"])
    expected = np.stack([reference.run(x)["logits"][0] for x in inputs])
    wrong = 0
    for a in record.answers:
        got, own = a.outputs["logits"][0], expected[a.index]
        nearest = int(np.abs(expected - got).max(1).argmin())
        wrong += int(np.abs(got - own).max() > 0.05 * np.abs(own).max() or not np.allclose(expected[nearest], own))
    return wrong


@pytest.fixture
def replicas(digits_repo):
    started: list[LocalTritonServer] = []

    def make(models: list[str] | None = None) -> LocalTritonServer:
        server = _replica(digits_repo, models)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
        server.cleanup()


def test_a_rolling_restart_loses_nothing_and_the_restarted_replica_serves_again(replicas, digits_repo, reliability):
    a, b = replicas(), replicas()
    n = scaled(1000)  # requests before the SIGTERM, and again after A is back
    inputs = _images(256, seed=21)
    with Client([a.grpc_url, b.grpc_url], cooldown=0.25, max_cooldown=2.0) as client:  # the default deadline
        client.infer("digits", inputs[0])
        with SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=THREADS) as load:
            load.wait_for(n)
            at_sigterm, t0 = load.record.requests, time.monotonic()
            a.process.send_signal(signal.SIGTERM)
            code = a.process.wait(60)  # Triton drains (--exit-timeout-secs=10) and exits
            drained_s, during_drain = time.monotonic() - t0, load.record.requests - at_sigterm
            a.stop()  # its scratch tree
            a.start()  # the same ports
            down_s, back_at = time.monotonic() - t0, load.record.requests
            deadline = time.monotonic() + 120
            while (load.record.requests < back_at + n or _successes(a) == 0) and time.monotonic() < deadline:
                time.sleep(0.1)
            a_after = _successes(a)
        record = load.record
        a_state = (client.pool.is_down(a.grpc_url), client.pool.is_probing(a.grpc_url))
    wrong = _wrong(record, inputs, digits_repo)
    errors = sorted({e for _, _, e in record.errors})[:3]
    reliability(
        "rolling restart (SIGTERM, drain, start again)",
        f"{THREADS} threads through a client holding both replicas; replica A sent SIGTERM after {n} requests "
        "(drains, exits), started again on its ports, load kept on",
        record.requests,
        len(record.errors),
        wrong,
        f"{during_drain} requests while A drained ({drained_s:.1f} s, exit {code}), A back after "
        f"{down_s:.1f} s; A answered {a_after} requests after its restart",
    )
    assert record.errors == [], errors
    assert wrong == 0 and code == 0
    assert a_after > 0, "the restarted replica was never used again"
    assert a_state == (False, False), "the client still holds the restarted replica out"


def test_a_replica_without_the_model_costs_no_request(replicas, digits_repo, reliability):
    empty = replicas(models=[])  # explicit model control, nothing loaded: NOT_FOUND for digits
    full = replicas()
    with Client(empty.grpc_url) as only_empty:  # every endpoint lacks it: ModelNotFound at once, not after retries
        started = time.monotonic()
        with pytest.raises(ModelNotFound, match="not served by any endpoint"):
            only_empty.infer("digits", _images(1, seed=0)[0])
        assert time.monotonic() - started < 5
    n = scaled(500)
    inputs = _images(64, seed=22)
    with (
        Client([empty.grpc_url, full.grpc_url], cooldown=0.25, max_cooldown=2.0) as client,
        SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=THREADS, max_requests=n) as load,
    ):
        load.wait_for(n)
    record = load.record
    wrong = _wrong(record, inputs, digits_repo)
    reliability(
        "replica without the model",
        f"{THREADS} threads through a client holding a replica that never loaded digits (NOT_FOUND) and one that did",
        record.requests,
        len(record.errors),
        wrong,
        "NOT_FOUND moved each request to the other replica; ModelNotFound only from a client whose every "
        "endpoint lacks the model",
    )
    assert record.errors == [] and record.requests == n and wrong == 0
