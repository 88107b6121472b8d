"""Build, gate and time every precision variant of one model; reuse stages whose inputs did not change."""

from __future__ import annotations

from pathlib import Path

from tritonforge.builder.converters import CONVERTERS, VariantSpec, variant_spec
from tritonforge.builder.converters.base import NotApplicable
from tritonforge.builder.variants.context import BuildContext
from tritonforge.builder.variants.conversion import BuiltFiles, convert, reused, variant_key
from tritonforge.builder.variants.gating import gate_file
from tritonforge.builder.variants.int8_strategies import INT8_STRATEGIES
from tritonforge.builder.variants.outcome import FP32, VariantOutcome, VariantsResult, spec_for, status_line
from tritonforge.builder.variants.primary import choose_primary, search_winner
from tritonforge.builder.variants.timing import subnormal_speedup_notes, time_variants

FLUSHED = "onnx_fp32_ftz"  # FP32 with its subnormal weights set to zero


class VariantBuilder:
    """Runs the variant stages of one build: each variant converted and gated (or its last result reused), the
    INT8 search's points, the timing, the search's winner and the primary."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.notes: list[str] = []
        self.built = BuiltFiles(ctx)

    def convert(self, v: VariantSpec, outcome: VariantOutcome) -> Path:
        return convert(self.ctx, v, outcome)

    def build_one(self, v: VariantSpec, search: bool = False) -> VariantOutcome:
        ctx = self.ctx
        converter = CONVERTERS[v.kind]
        key = variant_key(ctx, v)
        last = reused(ctx, key, v.variant_id)
        if last is not None:
            last.search = search
            return last
        outcome = VariantOutcome(
            id=v.variant_id,
            kind=v.kind,
            runtime=converter.runtime,
            precision=converter.precision,
            options=v.model_dump(mode="json", exclude_defaults=True),
            search=search,
            key=key,
        )
        reason = converter.unavailable()
        if reason:
            outcome.status, outcome.reason = "skipped", reason
            return outcome
        try:
            path = ctx.fp32 if v.kind == "onnx_fp32" else self.convert(v, outcome)
            same = self.built.same_as(v, path, search)
        except NotApplicable as e:
            outcome.status, outcome.reason = "skipped", str(e)
            return outcome
        except Exception as e:  # a failed conversion rejects this variant, not the build
            outcome.status, outcome.reason = "error", f"{type(e).__name__}: {str(e).strip()[:600]}"
            return outcome
        if same:
            outcome.status, outcome.reason = "skipped", same
            return outcome
        gate_file(ctx, v, path, outcome)
        return outcome

    def gated(self, v: VariantSpec, search: bool) -> VariantOutcome:
        with self.ctx.reporter.stage(f"variant {v.variant_id}: convert and gate"):
            outcome = self.build_one(v, search)
        self.ctx.reporter.info(status_line(outcome))
        return outcome

    def run(self) -> VariantsResult:
        ctx = self.ctx
        s = ctx.spec.int8_search
        strategy = INT8_STRATEGIES[s.strategy] if s.enabled else None
        specs = [(FP32, False)] + [(v, False) for v in ctx.spec.variants]
        if ctx.subnormal_weights and ctx.spec.timing.flushed_fp32 and FLUSHED not in {v.kind for v in ctx.spec.variants}:
            specs.append((variant_spec(FLUSHED), False))
            self.notes.append(
                f"{FLUSHED} built beside FP32: its graph holds {ctx.subnormal_weights} subnormal weight(s), which "
                "some CPUs run in microcode; speed-ups are against the faster of the two (timing.flushed_fp32: false "
                "turns this off)"
            )
        if strategy is not None:
            specs += [(v, True) for v in strategy.planned(self)]
        outcomes = [self.gated(v, search) for v, search in specs]
        search_path = None
        if strategy is not None:
            found = strategy.adaptive(self)
            outcomes += found.outcomes
            specs += [(v, True) for v in found.specs]
            search_path = found.path
        all_specs = [v for v, _ in specs]

        def file_of(o: VariantOutcome) -> str:
            return str(ctx.fp32 if o.kind == "onnx_fp32" else self.convert(spec_for(o, all_specs), o))

        timing = time_variants(ctx, outcomes, file_of)
        self.notes.extend(subnormal_speedup_notes(outcomes, timing.reference))
        winner = search_winner(outcomes)
        primary, why = choose_primary(outcomes, winner, ctx.spec.timing.enabled, timing.reference)
        self.notes.append(why)
        for o in outcomes:  # results reused without their file (not published last time) need it now
            if o.passed and (not o.search or o.id == winner) and not o.file:
                o.file = file_of(o)
        return VariantsResult(outcomes, primary, winner, timing.reused, timing.reference, self.notes, ctx.stages, search_path)
