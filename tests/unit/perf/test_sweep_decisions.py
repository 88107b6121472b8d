"""The sweep's decisions without a server: how many inputs a compute point gets, and what happens to a compute
point that the cache answered (measured again with fresh inputs, then void: never reported with its numbers)."""

from __future__ import annotations

from tritonforge.perf.analyzer import MEASURED_FIELDS, MeasureSettings, PerfPoint
from tritonforge.perf.sweep import ServerCounters, counters_in, judge_compute, planned_requests

SETTINGS = MeasureSettings(url="x", measurement_interval_ms=1000, max_trials=6)


def _point(conc: int, throughput: float) -> PerfPoint:
    zeros = dict.fromkeys((f for f in MEASURED_FIELDS if f != "throughput"), 1.0)
    return PerfPoint(model="m", batch_size=1, concurrency=conc, request_rate=None, throughput=throughput, **zeros)


def test_a_compute_point_gets_the_inputs_its_windows_may_send():
    # nothing measured yet: no estimate (the sweep starts from FIRST_POINT_REQUESTS)
    assert planned_requests(SETTINGS, 1, 1, None, []) is None
    # 1,500/s at c1 -> at most 6,000/s at c4; 6 windows of 1 s, with a 1.2 margin
    assert planned_requests(SETTINGS, 1, 4, None, [_point(1, 1500.0)]) == int(1.2 * 6000 * 6) + 1
    # the highest estimate of the earlier points counts; a failed one does not
    failed = PerfPoint.failed("m", 1, 2, None, "boom")
    assert planned_requests(SETTINGS, 1, 4, None, [_point(1, 1500.0), _point(2, 2000.0), failed]) == int(1.2 * 6000 * 6) + 1
    # a request rate says it directly (batch 4: four inputs a request)
    assert planned_requests(SETTINGS, 4, None, 100.0, []) == int(1.2 * 400 * 6) + 1
    # count windows: requests per window, whatever the throughput
    counted = MeasureSettings(url="x", measurement_mode="count_windows", measurement_request_count=50, max_trials=6)
    assert planned_requests(counted, 2, 8, None, []) == int(1.2 * (6 * 50 * 2 + 8 * 2))


def test_a_compute_point_without_hits_is_kept():
    assert judge_compute(0, 9000, 9000, 20000, 600000, again=False).action == "keep"
    # not counted (a tritonforge cache and no /metrics): kept, and the sweep notes it
    assert judge_compute(None, 9000, 9000, 20000, 600000, again=False).action == "keep"


def test_a_compute_point_that_went_round_its_file_is_measured_again_with_twice_what_it_sent():
    """The issue's case: --input-count 500 and a compute point read 86% cache hits."""
    judged = judge_compute(3612, 4200, 4200, 500, 600000, again=False)
    assert judged.action == "rerun" and judged.count == 8400
    assert judged.reason == (
        "3612 of 4200 requests answered by a cache (it sent 4200 inputs from a file of 500, so perf_analyzer repeated them)"
    )
    # the re-run's file is bounded by --max-input-bytes
    assert judge_compute(3612, 4200, 4200, 500, 6000, again=False).count == 6000


def test_hits_with_unique_inputs_are_measured_again_with_a_fresh_file():
    judged = judge_compute(3, 4200, 4200, 20000, 600000, again=False)
    assert judged.action == "rerun" and judged.count == 40000 and "inputs were unique" in judged.reason


def test_a_compute_point_with_hits_again_after_the_rerun_is_void():
    judged = judge_compute(12, 9000, 9000, 20000, 600000, again=True)
    assert judged.action == "void" and judged.reason.endswith("again after a re-run with fresh inputs")


def test_a_point_that_needs_more_inputs_than_the_bound_holds_is_void_naming_the_option():
    judged = judge_compute(2000, 3000, 3000, 330, 330, again=False)
    assert judged.action == "void"
    assert "--max-input-bytes holds 330 requests, fewer than it sends: raise it" in judged.reason


def test_a_void_point_keeps_no_number():
    point = _point(4, 5104.0).voided("86% answered by a cache")
    assert not point.ok and point.void and point.throughput == 0 and point.p99_us == 0 and not point.error


def test_the_servers_counters_sum_the_measured_models_labels_and_ignore_other_models_and_metrics():
    text = "\n".join(
        [
            "# HELP tritonforge_cache_hits_total Requests answered from the cache",
            "# TYPE tritonforge_cache_hits_total counter",
            'tritonforge_cache_hits_total{model="a",store="memory"} 3',
            'tritonforge_cache_hits_total{model="b",store="redis"} 4',
            'tritonforge_cache_hits_total_other{model="b"} 100',
            'tritonforge_cache_misses_total{model="a",store="memory"} 5',
            'tritonforge_shadow_samples_total{model="a",variant="in_process:a_onnx_int8"} 12',
            'tritonforge_shadow_dropped_total{model="a"} 2',
            'nv_inference_count{model="a",version="1"} 999',
            'tritonforge_cache_hits_total{model="other",store="memory"} 50',
            'tritonforge_shadow_samples_total{model="ab"} 40',
            "tritonforge_cache_hits_total 60",
        ]
    )
    counted = counters_in(text, ["a", "b"])
    assert counted == ServerCounters(hits=7, misses=5, shadow_compared=12, shadow_dropped=2, shadow_errors=0)
    assert counted.since(ServerCounters(1, 1, 2, 0, 0)) == ServerCounters(6, 4, 10, 2, 0)
