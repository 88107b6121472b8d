"""The accuracy gate: a variant is published only if it stays close enough to the FP32 reference."""

from __future__ import annotations

from tritonforge.builder.verify import Comparison
from tritonforge.serving.gate import GateResult, judge
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


def evaluate(comparison: Comparison, gate: GateSpec, kinds: dict[str, str]) -> GateResult:
    """The gate's decision on a variant's comparison with FP32 (serving/gate.py judges; the served model's shadow
    judges live answers with the same code)."""
    return judge(comparison.outputs, comparison.accuracy, gate, kinds)
