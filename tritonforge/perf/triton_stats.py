"""Triton's per-model statistics (the statistics extension, over gRPC) as plain numbers.

Every count is cumulative since the model was loaded, warm-up requests included, so callers compare a reading
before and after what they measure.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

# Server-side stages of a successful request; their sum is the time Triton spent on it.
STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ModelStats:
    """One model's counters at one moment."""

    inference_count: int  # batch elements answered (a request of batch 4 counts 4)
    execution_count: int  # executions run (a batch the dynamic batcher merged counts once)
    success: int  # successful requests
    cache_hits: int  # requests answered by Triton's own response cache
    cache_misses: int
    server_ms: float  # queue + compute time of the successful requests, summed

    def __sub__(self, before: ModelStats) -> ModelStats:
        return ModelStats(*(a - b for a, b in zip(astuple(self), astuple(before), strict=True)))


def model_stats(admin, model: str) -> ModelStats:
    """The counters of `model` (latest version) from a tritonclient.grpc InferenceServerClient."""
    s = admin.get_inference_statistics(model, as_json=True)["model_stats"][0]
    stages = s.get("inference_stats", {})
    count = lambda key: int(stages.get(key, {}).get("count", 0))  # noqa: E731
    return ModelStats(
        inference_count=int(s.get("inference_count", 0)),
        execution_count=int(s.get("execution_count", 0)),
        success=count("success"),
        cache_hits=count("cache_hit"),
        cache_misses=count("cache_miss"),
        server_ms=sum(int(stages.get(k, {}).get("ns", 0)) for k in STAGES) / 1e6,
    )


def stats_of(admin, models: list[str]) -> dict[str, ModelStats]:
    """model_stats for each of `models`."""
    return {m: model_stats(admin, m) for m in models}


def figures(d: ModelStats) -> dict[str, float]:
    """What a difference of two readings says: requests answered, the average batch its executions ran (batch
    elements / executions) and its server time (queue + compute) per request in ms."""
    return {
        "requests": d.success,
        "avg_batch": round(d.inference_count / d.execution_count, 2) if d.execution_count else 0.0,
        "server_ms": round(d.server_ms / d.success, 3) if d.success else 0.0,
    }
