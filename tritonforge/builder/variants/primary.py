"""Which variant the model is served as, and which variants are published in what order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from tritonforge.builder.variants.outcome import SEARCH_WINNER_ID, VariantOutcome

# How much faster than FP32 (geometric mean of the p50 speed-ups) a variant must be to be served instead: the
# spread of repeated timings on a shared machine is about this, and a variant that is no faster only adds error.
PRIMARY_MARGIN = 1.05


def search_winner(outcomes: list[VariantOutcome]) -> str | None:
    """The INT8 search's fastest passing point, if one passed."""
    passing = [o for o in outcomes if o.search and o.passed]
    if not passing:
        return None
    return max(passing, key=VariantOutcome.speed).id


def choose_primary(
    outcomes: list[VariantOutcome], winner: str | None, timed: bool, reference: str = "onnx_fp32"
) -> tuple[str, str]:
    """(variant id, why): the variant the model is served as. Speed-ups are against `reference`, the fastest
    exact-FP32 configuration. The fastest passing reduced-precision variant, if it is at least PRIMARY_MARGIN
    faster than the reference (a variant that adds error must buy speed); else the reference, if it is at least
    PRIMARY_MARGIN faster than FP32 itself (a rewrite that claims FP32's answers must buy speed too); else FP32."""
    if not timed:
        return "onnx_fp32", "primary: onnx_fp32 (timing is off, so no variant has shown it is faster)"
    publishable = [o for o in outcomes if o.passed and (not o.search or o.id == winner)]
    by_id = {o.id: o for o in publishable}
    ref = by_id.get(reference)
    fp32 = by_id.get("onnx_fp32")
    best = max((o for o in publishable if not o.exact_fp32), key=VariantOutcome.speed, default=None)

    def shown(o: VariantOutcome) -> str:
        return (
            "/".join(f"{o.speedup[b]:.2f}x" for b in sorted(o.speedup, key=int))
            + f" at batch {'/'.join(sorted(o.speedup, key=int))}"
        )

    against = "FP32" if reference == "onnx_fp32" else reference
    if best is not None and best.speed() >= PRIMARY_MARGIN:
        return best.id, f"primary: {best.id}, the fastest passing variant: p50 {shown(best)} of {against}'s"
    why = f"the fastest passing variant, {best.id}, is {shown(best)} of {against}'s p50" if best else "no other variant passed"
    if ref is not None and fp32 is not None and ref is not fp32 and fp32.speed() and 1 / fp32.speed() >= PRIMARY_MARGIN:
        return ref.id, (
            f"primary: {ref.id} (FP32's answers), {1 / fp32.speed():.2f}x faster than onnx_fp32: {why}; a variant must be "
            f"{PRIMARY_MARGIN:.2f}x faster than {ref.id} to be served in its place"
        )
    return "onnx_fp32", (f"primary: onnx_fp32: {why}; a variant must be {PRIMARY_MARGIN:.2f}x faster to be served in its place")


@dataclass(frozen=True)
class PublishOrder:
    """The variants that go into the repository, in the router's order (each a copy naming its Triton model),
    and the model name of each variant id."""

    published: list[VariantOutcome]
    names: dict[str, str]


def publish_order(
    outcomes: list[VariantOutcome], primary: str, winner: str | None, model_name: Callable[[str], str]
) -> PublishOrder:
    """Variants that passed the gate and go into the repository (INT8 search: only its fastest point, as
    SEARCH_WINNER_ID; `model_name`: variant id -> Triton model name), in the router's order: the primary first, then by the report's p50 speed-ups (FP32
    untimed ranks as 1.0). The outcomes themselves are not changed."""
    out = [
        replace(o, published_as=model_name(SEARCH_WINNER_ID if o.search else o.id))
        for o in outcomes
        if o.passed and (not o.search or o.id == winner)
    ]
    out.sort(key=lambda o: (o.id != primary, -(o.speed() or (1.0 if o.kind == "onnx_fp32" else 0.0))))
    return PublishOrder(out, {o.id: o.published_as for o in out})
