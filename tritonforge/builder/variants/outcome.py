"""What became of each variant, and of all of them: the values the variant stages hand to the pipeline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tritonforge.builder.converters import CONVERTERS, VariantSpec, variant_spec
from tritonforge.builder.stages import StageCache

SEARCH_WINNER_ID = "onnx_int8"  # the INT8 search's fastest passing point is published under this variant id
FP32 = variant_spec("onnx_fp32")


def geometric_mean(ratios: Iterable[float]) -> float:
    """The geometric mean of the positive `ratios` (speed-ups over batch sizes); 0 when there is none."""
    values = [v for v in ratios if v and v > 0]
    return float(np.exp(np.mean(np.log(values)))) if values else 0.0


@dataclass
class VariantOutcome:
    """What became of one variant. status: passed | rejected (gate) | skipped (cannot run here) | error."""

    id: str
    kind: str
    runtime: str
    precision: str
    options: dict[str, Any]
    search: bool = False
    status: str = "pending"
    reason: str = ""
    size_bytes: int = 0
    device: str = ""
    comparison: dict | None = None
    gate: dict | None = None
    timing: dict[str, dict] = field(default_factory=dict)  # batch size -> LatencyStats dict
    speedup: dict[str, float] = field(default_factory=dict)  # batch size -> the reference's p50 / this p50
    memory_mb: float | None = None
    measured_in: str = ""  # the runtime and version its gate figures and timings came from
    notes: list[str] = field(default_factory=list)
    key: str = ""
    file_sha256: str = ""
    published_as: str = ""  # Triton model name, when published
    file: str = ""  # where the artifact is during this build (not persisted)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def exact_fp32(self) -> bool:
        """FP32 itself, or a rewrite of it that claims its answers (subnormal weights flushed, a fused graph)."""
        return self.kind == FP32.kind or CONVERTERS[self.kind].exact

    def throughput(self, batch_size: int) -> float:
        return float(self.timing.get(str(batch_size), {}).get("throughput", 0.0))

    def speed(self) -> float:
        """The geometric mean of its p50 speed-ups against the reference (the fastest exact-FP32 configuration)
        over the timing batch sizes: the figures the report shows (0 when it was not timed)."""
        return geometric_mean(self.speedup.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("file")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VariantOutcome:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class VariantsResult:
    outcomes: list[VariantOutcome]
    primary: str
    search_winner: str | None
    timing_reused: bool
    reference: str  # the variant every speed-up is against: the fastest exact-FP32 configuration
    notes: list[str]
    stages: StageCache
    search_path: dict | None = None

    def stage_records(self, published: dict[str, str]) -> dict[str, dict]:
        """Stage keys and results for the manifest, each variant's with the model it was published as
        (`published`: variant id -> model name), so that the next build finds its file."""
        for o in self.outcomes:
            self.stages.store(f"variant:{o.id}", o.key, result=o.to_dict() | {"published_as": published.get(o.id, "")})
        return self.stages.records


def spec_for(outcome: VariantOutcome, specs: list[VariantSpec]) -> VariantSpec:
    """The variant spec an outcome came from (rebuilt from its recorded options when it is not among `specs`)."""
    for v in specs:
        if v.variant_id == outcome.id:
            return v
    return variant_spec(outcome.kind, **{k: v for k, v in outcome.options.items() if k != "kind"})


def status_line(o: VariantOutcome) -> str:
    if o.status == "passed":
        return f"{o.id}: passed the gate"
    return f"{o.id}: {o.status}: {o.reason}"
