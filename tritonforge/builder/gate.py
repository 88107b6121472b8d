"""The accuracy gate: a variant is published only if it stays close enough to the FP32 reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tritonforge.builder.verify import Comparison
from tritonforge.spec import GateSpec

# Fewer held-out samples than this and the gate's figures (top-1 agreement, accuracy drop, the worst cosine) say
# little: one sample is 3% of 32, so a variant that flips one answer in thirty passes or fails by chance.
MIN_VALIDATION_SAMPLES = 32


def small_validation_note(samples: int) -> str | None:
    """A warning for the build output and the report's notes when the validation set is too small to gate on."""
    if samples >= MIN_VALIDATION_SAMPLES:
        return None
    return (
        f"warning: validation.data holds {samples} sample(s), fewer than {MIN_VALIDATION_SAMPLES}: every variant's "
        f"gate decision rests on them (one sample is {1 / samples:.0%} of top-1 agreement and accuracy), so a "
        "variant passed here may still lose accuracy; give more held-out samples (never training data)"
    )


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


def evaluate(comparison: Comparison, gate: GateSpec, kinds: dict[str, str]) -> GateResult:
    """Apply to each output the checks that fit what it is (`kinds`: embedding, class_scores, regression) with
    its own thresholds (gate.outputs) or the gate's: worst-sample cosine for embeddings, top-1 agreement for class
    scores (and the accuracy drop when labels were given), mean relative error for regressions; max abs on every
    output when set; no non-finite value anywhere."""
    outputs = list(comparison.outputs.values())
    checks = [_at_most("non-finite values", float(sum(m.nonfinite for m in outputs)), 0.0)]
    for m in outputs:
        kind = kinds.get(m.name, "embedding")
        label = f"{m.name}: " if len(outputs) > 1 else ""
        if kind == "embedding":
            checks.append(_at_least(f"{label}min cosine", m.min_cosine, gate.threshold(m.name, "min_cosine")))
        elif kind == "class_scores" and m.top1_agreement is not None:
            checks.append(_at_least(f"{label}top-1 agreement", m.top1_agreement, gate.threshold(m.name, "min_top1_agreement")))
        elif kind == "regression":
            checks.append(_at_most(f"{label}mean rel error", m.mean_rel, gate.threshold(m.name, "max_mean_rel")))
        limit = gate.threshold(m.name, "max_abs")
        if limit is not None:
            checks.append(_at_most(f"{label}max abs", m.max_abs, limit))
    if comparison.accuracy is not None:
        drop = comparison.accuracy["reference"] - comparison.accuracy["candidate"]
        classes = [n for n, k in kinds.items() if k == "class_scores"]
        checks.append(
            _at_most(
                "accuracy drop", drop, gate.threshold(classes[0], "max_accuracy_drop") if classes else gate.max_accuracy_drop
            )
        )
    return GateResult(all(c.passed for c in checks), checks)
