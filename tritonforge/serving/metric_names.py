"""The names of the metrics the serving logic reports, owned here: the router, the cache, the public model, the
publisher that sends them to Triton's /metrics, perf and the tests all use these constants. Dashboards and alerts
read these names: changing one is a breaking change."""

from __future__ import annotations

from typing import Literal

# How often the public model sends its counters to /metrics (off the request path); readers that need exact
# counts right after a request wait METRICS_LAG_S.
METRICS_INTERVAL_MS = 100
METRICS_LAG_S = 3 * METRICS_INTERVAL_MS / 1000

ROUTER_REQUESTS = "tritonforge_router_requests_total"
ROUTER_FAILURES = "tritonforge_router_failures_total"
ROUTER_FALLBACKS = "tritonforge_router_fallbacks_total"
ROUTER_REJECTED = "tritonforge_router_rejected_total"
ROUTER_BREAKER_OPEN = "tritonforge_router_breaker_open"
ROUTER_RUNG_ABSENT = "tritonforge_router_rung_absent"
ROUTER_RUNG_DEMOTED = "tritonforge_router_rung_demoted"
CACHE_HITS = "tritonforge_cache_hits_total"
CACHE_MISSES = "tritonforge_cache_misses_total"
CACHE_ERRORS = "tritonforge_cache_errors_total"
CACHE_STORED_BYTES = "tritonforge_cache_stored_bytes_total"
CACHE_REJECTED = "tritonforge_cache_rejected_total"
CACHE_DROPPED_WRITES = "tritonforge_cache_dropped_writes_total"
CACHE_HIT_LATENCY_US = "tritonforge_cache_hit_latency_us"
SHADOW_SAMPLES = "tritonforge_shadow_samples_total"
SHADOW_BROKEN = "tritonforge_shadow_broken_samples_total"
SHADOW_DROPPED = "tritonforge_shadow_dropped_total"
SHADOW_ERRORS = "tritonforge_shadow_errors_total"
SHADOW_WINDOW = "tritonforge_shadow_window_value"
SHADOW_WINDOW_SAMPLES = "tritonforge_shadow_window_samples"

MetricKind = Literal["counter", "gauge", "histogram"]

# name -> (description, kind): every family the public model registers.
FAMILIES: dict[str, tuple[str, MetricKind]] = {
    ROUTER_REQUESTS: ("Requests answered, per variant", "counter"),
    ROUTER_FAILURES: ("Failed calls of a loaded variant, per variant", "counter"),
    ROUTER_FALLBACKS: ("Requests answered by a variant other than the first loaded one", "counter"),
    ROUTER_REJECTED: ("Requests refused for their own bad input (INVALID_ARG)", "counter"),
    ROUTER_BREAKER_OPEN: ("1 while a variant's circuit breaker makes the router skip it", "gauge"),
    ROUTER_RUNG_ABSENT: ("1 while a variant is not loaded on this server", "gauge"),
    ROUTER_RUNG_DEMOTED: ("1 while a variant is skipped because its answers drifted from FP32 (shadow)", "gauge"),
    CACHE_HITS: ("Requests answered from the cache", "counter"),
    CACHE_MISSES: ("Requests computed by the model", "counter"),
    CACHE_ERRORS: ("Store errors (requests served without the cache)", "counter"),
    CACHE_STORED_BYTES: ("Compressed bytes written", "counter"),
    CACHE_REJECTED: ("Stored values refused (failed authentication, size or shape checks)", "counter"),
    CACHE_DROPPED_WRITES: ("Computed answers not stored because the writer was behind", "counter"),
    CACHE_HIT_LATENCY_US: ("Lookup and decode time of hits (us)", "histogram"),
    SHADOW_SAMPLES: ("Answered samples compared with the FP32 reference, per variant", "counter"),
    SHADOW_BROKEN: ("Compared samples that alone break the accuracy gate, per variant", "counter"),
    SHADOW_DROPPED: ("Sampled requests not compared because the shadow was behind", "counter"),
    SHADOW_ERRORS: ("Sampled requests whose FP32 reference could not be computed", "counter"),
    SHADOW_WINDOW: ("Each gate check's value over a variant's rolling window (label check)", "gauge"),
    SHADOW_WINDOW_SAMPLES: ("Samples in a variant's rolling window", "gauge"),
}

# The metrics labelled per rung (`variant`), those per model only, the shadow's, and the cache's counters
# (labelled `store`).
ROUTER_PER_RUNG = (ROUTER_REQUESTS, ROUTER_FAILURES, ROUTER_BREAKER_OPEN, ROUTER_RUNG_ABSENT, ROUTER_RUNG_DEMOTED)
ROUTER_PER_MODEL = (ROUTER_FALLBACKS, ROUTER_REJECTED)
SHADOW_PER_RUNG = (SHADOW_SAMPLES, SHADOW_BROKEN, SHADOW_WINDOW_SAMPLES)
SHADOW_PER_MODEL = (SHADOW_DROPPED, SHADOW_ERRORS)
CACHE_COUNTERS = (CACHE_HITS, CACHE_MISSES, CACHE_ERRORS, CACHE_STORED_BYTES, CACHE_DROPPED_WRITES)
