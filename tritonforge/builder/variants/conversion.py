"""Make one variant's file from the FP32 ONNX, or find the last build's result for it."""

from __future__ import annotations

from pathlib import Path

from tritonforge.builder.converters import CONVERTERS, ConversionJob, VariantSpec
from tritonforge.builder.converters.base import conversion_source
from tritonforge.builder.onnx_graph import finalize_variant
from tritonforge.builder.variants.context import BuildContext
from tritonforge.builder.variants.outcome import FP32, VariantOutcome
from tritonforge.hashing import sha256_file
from tritonforge.repository.reader import Repository


def variant_key(ctx: BuildContext, v: VariantSpec) -> str:
    """Everything a variant's conversion and gate depend on."""
    spec = ctx.spec
    return ctx.key(
        variant=v,
        validation=ctx.validation.fingerprint(),
        served=ctx.served.data.fingerprint() if ctx.served else "",
        gate=spec.gate,
        **CONVERTERS[v.kind].key_parts(spec, ctx.calibration),
    )


def reused(ctx: BuildContext, key: str, vid: str) -> VariantOutcome | None:
    """The last build's outcome for this key, with its published file when that is still the same file."""
    old = ctx.stages.lookup(f"variant:{vid}", key)
    if old is None:
        return None
    outcome = VariantOutcome.from_dict(old["result"])
    if outcome.published_as:
        path = Repository(ctx.repo).find_file(outcome.published_as)
        if path is not None and sha256_file(path) == outcome.file_sha256:
            outcome.file = str(path)
    outcome.published_as = ""
    return outcome


def convert(ctx: BuildContext, v: VariantSpec, outcome: VariantOutcome) -> Path:
    """Convert the FP32 file (or its fused graph) into variant `v` in the work directory (the converter's notes
    go to `outcome`; NotApplicable when the variant does not apply to this model)."""
    converter = CONVERTERS[v.kind]
    out = ctx.work / f"{v.variant_id}{converter.suffix}"
    notes: list[str] = []
    source = conversion_source(converter, v, ctx.fp32, ctx.work, ctx.validation, notes)
    job = ConversionJob(ctx.spec, v, source, out, ctx.work, ctx.calibration, notes, ctx.validation)
    converter.convert(job)
    if converter.suffix == ".onnx":
        finalize_variant(out, ctx.spec.export.ir_version)
    outcome.notes.extend(job.notes)
    return out


class BuiltFiles:
    """The variant files built so far (sha256 -> the first variant id), to tell a variant of its own from a copy."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.first: dict[str, str] = {ctx.fp32_sha: FP32.variant_id}

    def same_as(self, v: VariantSpec, path: Path, search: bool) -> str:
        """Why a converted file is not a variant of its own ('' if it is): it holds none of its precision, or
        it is byte-identical to a variant built before it (a spec variant is then published once)."""
        if v.kind == "onnx_fp32":
            return ""
        if CONVERTERS[v.kind].changed_nothing(path):
            from tritonforge.builder.converters.changed import op_summary

            return f"nothing to convert ({op_summary(self.ctx.fp32)})"
        twin = self.first.setdefault(sha256_file(path), v.variant_id)
        if twin != v.variant_id and not search:
            return f"byte-identical to {twin}: the one file is gated and published once, as {twin}"
        return ""
