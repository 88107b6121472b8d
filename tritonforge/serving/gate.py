"""The accuracy gate's decision: a candidate's metrics against FP32 (agreement.py) judged by thresholds per output.

One code for the build's gate (every variant on the held-out set) and the served model's shadow (live answers of
the serving variant against FP32): the same checks, the same thresholds.

Copied into the served model with the rest of the serving package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Literal, Protocol, overload

from .agreement import OutputMetrics

ShareThreshold = Literal["min_cosine", "min_top1_agreement", "max_accuracy_drop", "max_mean_rel"]


class Thresholds(Protocol):
    """What the gate reads of its thresholds (the spec's GateSpec, the served model's GateSettings)."""

    @overload
    def threshold(self, output: str, name: Literal["max_abs"]) -> float | None: ...
    @overload
    def threshold(self, output: str, name: ShareThreshold) -> float: ...

    @property
    def max_accuracy_drop(self) -> float: ...


@dataclass
class GateCheck:
    """One criterion: `value` against `threshold`; `margin` is how far inside (+) or outside (-) it is."""

    name: str
    op: str  # ">=" or "<="
    value: float
    threshold: float
    passed: bool
    margin: float

    def describe(self) -> str:
        op = self.op
        verdict = "ok" if self.passed else f"FAILS by {abs(self.margin):.4g}"
        return f"{self.name} {self.value:.4f} (needs {op} {self.threshold:g}): {verdict}"


@dataclass
class GateResult:
    passed: bool
    checks: list[GateCheck]

    @property
    def failures(self) -> list[str]:
        return [c.describe() for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checks": [asdict(c) | {"text": c.describe()} for c in self.checks]}


def _at_least(name: str, value: float, threshold: float) -> GateCheck:
    return GateCheck(name, ">=", value, threshold, value >= threshold, value - threshold)


def _at_most(name: str, value: float, threshold: float) -> GateCheck:
    return GateCheck(name, "<=", value, threshold, value <= threshold, threshold - value)


def agreement_upper_bound(agreement: float, samples: int, confidence: float) -> float:
    """The Wilson score upper bound, one-sided at `confidence`, of a rate observed as `agreement` over `samples`:
    the highest true agreement these samples leave plausible."""
    if samples <= 0:
        return 1.0
    z = NormalDist().inv_cdf(confidence)
    n, p = samples, agreement
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def judge(
    outputs: Mapping[str, OutputMetrics],
    accuracy: Mapping[str, float] | None,
    gate: Thresholds,
    kinds: Mapping[str, str],
    top1_confidence: float | None = None,
) -> GateResult:
    """Apply to each output the checks that fit what it is (`kinds`: embedding, class_scores, regression) with
    its own thresholds or the gate's: worst-sample cosine for embeddings, top-1 agreement for class scores (and
    the accuracy drop when labels were given), mean relative error for regressions; max abs on every output when
    set; no non-finite value anywhere. With `top1_confidence` (the shadow's live windows) top-1 agreement is
    judged by its upper bound at that confidence: it fails only when the samples show it below the threshold."""
    metrics = list(outputs.values())
    checks = [_at_most("non-finite values", float(sum(m.nonfinite for m in metrics)), 0.0)]
    for m in metrics:
        kind = kinds.get(m.name, "embedding")
        label = f"{m.name}: " if len(metrics) > 1 else ""
        if kind == "embedding":
            checks.append(_at_least(f"{label}min cosine", m.min_cosine, gate.threshold(m.name, "min_cosine")))
        elif kind == "class_scores" and m.top1_agreement is not None:
            top1, name = m.top1_agreement, "top-1 agreement"
            if top1_confidence is not None:
                top1 = agreement_upper_bound(top1, m.samples, top1_confidence)
                name = "top-1 agreement upper bound"
            checks.append(_at_least(f"{label}{name}", top1, gate.threshold(m.name, "min_top1_agreement")))
        elif kind == "regression":
            checks.append(_at_most(f"{label}mean rel error", m.mean_rel, gate.threshold(m.name, "max_mean_rel")))
        limit = gate.threshold(m.name, "max_abs")
        if limit is not None:
            checks.append(_at_most(f"{label}max abs", m.max_abs, limit))
    if accuracy is not None:
        drop = accuracy["reference"] - accuracy["candidate"]
        classes = [n for n, k in kinds.items() if k == "class_scores"]
        limit = gate.threshold(classes[0], "max_accuracy_drop") if classes else gate.max_accuracy_drop
        checks.append(_at_most("accuracy drop", drop, limit))
    return GateResult(all(c.passed for c in checks), checks)
