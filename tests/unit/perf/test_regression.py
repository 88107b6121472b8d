"""The regression gate compares like with like: the same model, series, batch size and load."""

from __future__ import annotations

import pytest

from tritonforge.errors import TritonforgeError
from tritonforge.perf.analyzer import PerfPoint
from tritonforge.perf.regression import compare
from tritonforge.perf.sweep import SweepResult


def _point(label, conc, throughput, p95_us=1000.0, error=""):
    if error:
        p = PerfPoint.failed("m", 1, conc, None, error)
    else:
        p = PerfPoint(
            model="m",
            batch_size=1,
            concurrency=conc,
            request_rate=None,
            throughput=throughput,
            p50_us=p95_us / 2,
            p90_us=p95_us,
            p95_us=p95_us,
            p99_us=p95_us,
            avg_us=p95_us / 2,
            client_send_us=0,
            client_recv_us=0,
            network_server_us=0,
            server_queue_us=0,
            server_compute_input_us=0,
            server_compute_infer_us=0,
            server_compute_output_us=0,
        )
    p.label = label
    return p


def _result(*points):
    return SweepResult(list(points), {}, {}, {})


def test_a_cache_series_is_never_compared_with_a_compute_one():
    base = _result(_point("compute", 1, 100.0), _point("cache", 1, 5000.0))
    now = _result(_point("compute", 1, 98.0), _point("cache", 1, 4900.0))
    gate = compare(now, base)
    assert gate.passed and gate.compared == 2
    only_cache = _result(_point("cache", 1, 100.0))  # slower than the cache was, faster than compute ever was
    gate = compare(only_cache, base)
    assert not gate.passed and gate.regressions[0].describe().startswith("m cache b1 c1: throughput 5000.00 -> 100.00")


def test_a_point_that_fails_now_is_a_regression_and_a_failed_baseline_point_is_not_compared():
    base = _result(_point("compute", 1, 100.0), _point("compute", 2, 0.0, error="perf_analyzer: no valid requests"))
    now = _result(_point("compute", 1, 0.0, error="perf_analyzer: no valid requests"), _point("compute", 2, 150.0))
    gate = compare(now, base)
    assert gate.compared == 1
    assert [c.describe() for c in gate.regressions] == ["m compute b1 c1: measured in the baseline, failed now"]
    with pytest.raises(TritonforgeError, match="no point in common"):
        compare(_result(_point("compute", 4, 1.0)), base)


def test_a_point_void_now_is_a_regression():
    base = _result(_point("compute", 1, 100.0))
    now = _result(_point("compute", 1, 300.0).voided("4000 of 4200 requests answered by a cache"))
    gate = compare(now, base)
    assert [c.describe() for c in gate.regressions] == ["m compute b1 c1: measured in the baseline, void now"]
