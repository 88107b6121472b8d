"""The metric names the serving logic reports: owned by serving/metric_names.py, read by dashboards."""

from __future__ import annotations

from tritonforge.serving import metric_names as m


def test_the_metric_names_are_the_ones_dashboards_read():
    assert sorted(m.FAMILIES) == sorted(
        f"tritonforge_{name}"
        for name in (
            "router_requests_total",
            "router_failures_total",
            "router_fallbacks_total",
            "router_rejected_total",
            "router_breaker_open",
            "router_rung_absent",
            "router_rung_demoted",
            "cache_hits_total",
            "cache_misses_total",
            "cache_errors_total",
            "cache_stored_bytes_total",
            "cache_rejected_total",
            "cache_dropped_writes_total",
            "cache_hit_latency_us",
            "shadow_samples_total",
            "shadow_broken_samples_total",
            "shadow_dropped_total",
            "shadow_errors_total",
            "shadow_window_value",
            "shadow_window_samples",
        )
    )
    constants = {v for k, v in vars(m).items() if k.isupper() and isinstance(v, str)}
    assert constants == set(m.FAMILIES)  # every constant is registered, every family has its constant
    assert set(m.ROUTER_PER_RUNG + m.ROUTER_PER_MODEL + m.SHADOW_PER_RUNG + m.SHADOW_PER_MODEL + m.CACHE_COUNTERS) < set(
        m.FAMILIES
    )
