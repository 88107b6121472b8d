"""Time the variants side by side, their speed-ups against FP32, and what the subnormal weights explain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.timing import measure, timing_input
from tritonforge.builder.variants.context import BuildContext, stage_key
from tritonforge.builder.variants.outcome import VariantOutcome
from tritonforge.builder.variants.primary import PRIMARY_MARGIN
from tritonforge.hardware import cpu_info


def time_variants(ctx: BuildContext, outcomes: list[VariantOutcome], file_of: Callable[[VariantOutcome], str]) -> bool:
    """Time side by side every variant that passed and every spec variant the gate rejected (so the report
    shows what its speed would have been); reuse the last timing if the same files were timed. `file_of` makes
    the file of a reused result that is not in the repository. True when the last timing was reused."""
    spec = ctx.spec
    if not spec.timing.enabled:
        return False
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
        speedups(timed)
        ctx.stages.store("timing", key, result=old["result"])
        return True
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
    speedups(timed)
    ctx.stages.store("timing", key, result={o.id: o.timing for o in timed})
    return False


def speedups(timed: list[VariantOutcome]) -> None:
    """Each timed variant's p50 speed-up against FP32's, per batch size."""
    fp32 = next((o for o in timed if o.kind == "onnx_fp32"), None)
    if fp32 is None:
        return
    for o in timed:
        o.speedup = {b: round(fp32.timing[b]["p50_ms"] / s["p50_ms"], 3) for b, s in o.timing.items() if b in fp32.timing}


def subnormal_speedup_notes(outcomes: list[VariantOutcome]) -> list[str]:
    """What part of each variant's speed-up the flushed subnormal weights explain: onnx_fp32_ftz is FP32 without
    them, so a variant's speed-up over it is what its precision bought."""
    ftz = next((o for o in outcomes if o.kind == "onnx_fp32_ftz" and o.speedup), None)
    if ftz is None:
        return []
    notes = []
    for b in sorted(ftz.speedup, key=int):
        base = ftz.speedup[b]
        others = [
            f"{o.id} {o.speedup[b] / base:.2f}x"
            for o in outcomes
            if o.speedup.get(b) and o.kind not in ("onnx_fp32", "onnx_fp32_ftz")
        ]
        line = f"batch {b}: {ftz.id} (FP32, subnormal weights set to zero) runs {base:.2f}x FP32's p50"
        if base >= PRIMARY_MARGIN:
            line += ": that part of every variant's speed-up is the subnormals', not the precision"
        if others:
            line += f"; against {ftz.id}: {', '.join(others)}"
        notes.append(line)
    return notes
