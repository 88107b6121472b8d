"""Time the variants side by side, their speed-ups against the fastest exact-FP32 configuration, and what the
subnormal weights cost FP32."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.timing import measure, timing_input
from tritonforge.builder.variants.context import BuildContext, stage_key
from tritonforge.builder.variants.outcome import FP32, VariantOutcome, geometric_mean
from tritonforge.builder.variants.primary import PRIMARY_MARGIN
from tritonforge.hardware import cpu_info


@dataclass(frozen=True)
class Timing:
    """Whether the last build's timing was reused, and the variant every speed-up is against."""

    reused: bool
    reference: str


def time_variants(ctx: BuildContext, outcomes: list[VariantOutcome], file_of: Callable[[VariantOutcome], str]) -> Timing:
    """Time side by side every variant that passed and every spec variant the gate rejected (so the report
    shows what its speed would have been); reuse the last timing if the same files were timed. `file_of` makes
    the file of a reused result that is not in the repository."""
    spec = ctx.spec
    if not spec.timing.enabled:
        return Timing(False, FP32.kind)
    timed = [o for o in outcomes if o.passed or (o.status == "rejected" and not o.search)]
    key = stage_key(
        files=sorted((o.id, o.file_sha256) for o in timed),
        settings=spec.timing,
        batches=str(spec.timing_batch_sizes),
        cpu=cpu_info(),
        threads=str(spec.serving.intra_op_threads),
    )
    old = ctx.stages.lookup("timing", key)
    if old is not None:
        for o in timed:
            o.timing = old["result"].get(o.id, {})
        ctx.stages.store("timing", key, result=old["result"])
        return Timing(True, speedups(timed) or FP32.kind)
    runners = {}
    with ctx.reporter.stage(f"time {len(timed)} variants side by side at batch {spec.timing_batch_sizes}"):
        for o in timed:
            if not o.file:  # reused result whose file is not in the repository: convert again
                o.file = file_of(o)
            runners[o.id] = open_runtime(
                o.runtime, Path(o.file), ctx.inputs, ctx.outputs, threads=spec.serving.intra_op_threads, ort=ctx.ort
            ).timer
        inputs = {b: timing_input(ctx.validation, b) for b in spec.timing_batch_sizes}
        stats = measure(runners, inputs, spec.timing)
    for o in timed:
        o.timing = {str(b): s.to_dict() for b, s in stats[o.id].items()}
    ctx.stages.store("timing", key, result={o.id: o.timing for o in timed})
    return Timing(False, speedups(timed) or FP32.kind)


def speedups(timed: list[VariantOutcome]) -> str | None:
    """Each timed variant's p50 speed-up, per batch size, against the reference: the fastest exact-FP32
    configuration that passed (the geometric mean of its p50s against FP32's), so that no variant's speed-up is a
    cost FP32 need not pay. Returns the reference's id (None without FP32's timing)."""
    fp32 = next((o for o in timed if o.kind == FP32.kind and o.timing), None)
    if fp32 is None:
        return None

    def against(base: VariantOutcome, o: VariantOutcome) -> dict[str, float]:
        return {b: round(base.timing[b]["p50_ms"] / s["p50_ms"], 3) for b, s in o.timing.items() if b in base.timing}

    exact = [o for o in timed if o.passed and o.timing and o.exact_fp32]
    reference = max(exact, key=lambda o: (geometric_mean(against(fp32, o).values()), o is fp32), default=fp32)
    for o in timed:
        o.speedup = against(reference, o)
    return reference.id


def subnormal_speedup_notes(outcomes: list[VariantOutcome], reference: str | None) -> list[str]:
    """What the subnormal weights cost FP32 on this CPU: onnx_fp32_ftz is FP32 without them, timed beside it."""
    fp32 = next((o for o in outcomes if o.kind == FP32.kind and o.timing), None)
    ftz = next((o for o in outcomes if o.kind == "onnx_fp32_ftz" and o.timing), None)
    if fp32 is None or ftz is None:
        return []
    notes = []
    for b in sorted(ftz.timing, key=int):
        if b not in fp32.timing:
            continue
        ratio = fp32.timing[b]["p50_ms"] / ftz.timing[b]["p50_ms"]
        line = f"batch {b}: {ftz.id} (FP32, subnormal weights set to zero) runs {ratio:.2f}x FP32's p50"
        if ratio >= PRIMARY_MARGIN:
            line += (
                ": the cost of the subnormal weights on this CPU"
                + (f"; speed-ups are against {reference}, which does not pay it" if reference != FP32.kind else "")
                + ("" if ftz.passed else f", but {ftz.id} did not pass the gate ({ftz.status})")
            )
        notes.append(line)
    return notes
