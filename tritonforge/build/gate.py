"""The accuracy gate: a variant is published only if it stays close enough to the FP32 reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tritonforge.build.spec import GateSpec
from tritonforge.build.verify import Comparison


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


def evaluate(comparison: Comparison, gate: GateSpec) -> GateResult:
    """Apply every criterion that fits the outputs: cosine on outputs that are not class scores, top-1 agreement
    on class scores, accuracy drop when labels were given, max abs when asked."""
    outputs = list(comparison.outputs.values())
    checks = [_at_most("non-finite values", float(sum(m.nonfinite for m in outputs)), 0.0)]
    dense = [m for m in outputs if not m.class_scores]
    if dense:
        checks.append(_at_least("min cosine", min(m.min_cosine for m in dense), gate.min_cosine))
    top1 = [m.top1_agreement for m in outputs if m.top1_agreement is not None]
    if top1:
        checks.append(_at_least("top-1 agreement", min(top1), gate.min_top1_agreement))
    if comparison.accuracy is not None:
        drop = comparison.accuracy["reference"] - comparison.accuracy["candidate"]
        checks.append(_at_most("accuracy drop", drop, gate.max_accuracy_drop))
    if gate.max_abs is not None:
        checks.append(_at_most("max abs", max(m.max_abs for m in outputs), gate.max_abs))
    return GateResult(all(c.passed for c in checks), checks)
