"""Faults and bad input, for real: malformed requests, a replica killed under load, a build killed half way,
Redis killed under load, and 20,000 requests through the text service. The same scenarios write
docs/reliability.md (python -m benchmarks.reliability)."""

from __future__ import annotations

import pytest

from tritonforge.build.pipeline import build
from benchmarks import reliability

from conftest import digits_spec_copy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_digits(tmp_path_factory, digits_spec):
    tmp = tmp_path_factory.mktemp("redis_digits")
    repo = tmp / "model_repository"
    build(digits_spec_copy(tmp / "spec", serving={"cache": {"kind": "redis", "ttl_s": 300}}), repo)
    return repo


def test_every_bad_request_is_refused_by_name_and_the_server_stays_up(service_server):
    results = reliability.bad_requests(service_server.grpc_url)
    assert len(results) == len(reliability.BAD_REQUESTS) >= 10
    for r in results:
        assert r.ok, (r.scenario, r.details)


def test_replica_killed_mid_load_loses_nothing_and_replicas_share_the_cache(redis_digits, redis_server):
    shared, load = reliability.replica_failover(redis_digits, redis_server.url, requests=2000, concurrency=16)
    assert shared.ok, shared.details
    assert load.requests == 2000
    assert load.failed == 0 and load.wrong == 0, load.details
    assert "A killed after" in load.details[0]


def test_redis_killed_mid_load_fails_no_request(redis_digits):
    r = reliability.redis_killed(redis_digits, requests=600)
    assert r.ok, r.details


def test_build_killed_with_sigkill_leaves_the_previous_repository(tmp_path, digits_spec):
    spec = digits_spec_copy(tmp_path / "spec")
    repo = tmp_path / "model_repository"
    build(spec, repo)
    r = reliability.killed_build(spec, repo, load_requests=200)
    assert r.ok, r.details
    assert "byte-identical" in r.details[0]


@pytest.mark.slow
def test_text_service_20000_requests_at_concurrency_64(service_repo, service_server):
    r = reliability.ensemble_load(service_repo, service_server.grpc_url, requests=20000, concurrency=64, distinct=5000)
    assert r.failed == 0, r.details
    assert r.wrong == 0, r.details
