"""The gate: a variant's outputs against the FP32 reference on the validation data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tritonforge.builder.converters import CONVERTERS, VariantSpec
from tritonforge.builder.data import Dataset
from tritonforge.builder.gate import evaluate
from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.timing import timing_input
from tritonforge.builder.variants.context import BuildContext, ServedData
from tritonforge.builder.variants.outcome import VariantOutcome
from tritonforge.builder.verify import Comparison, Outputs, compare, rebatch_outputs, run_over
from tritonforge.hashing import sha256_file
from tritonforge.serving.gate import GateResult
from tritonforge.spec import BuildSpec

Run = Callable[..., dict]  # a runtime's run: one batch of inputs -> outputs


def check_variant(
    spec: BuildSpec,
    validation: Dataset,
    reference: Outputs,
    run: Run,
    batch_dependent: bool,
    candidate: Outputs | None = None,
    served: ServedData | None = None,
) -> tuple[Comparison, GateResult, list[str]]:
    """Compare a variant with the FP32 reference on the validation data and apply the gate. A batch-dependent
    variant must pass one sample at a time too (served batches are not the validation batches); the worse of
    the two comparisons is the one reported. With `served` (texts padded to the serving buckets), it must pass
    on those too, batched and, if batch-dependent, one request at a time; the first failure is reported."""
    tol = spec.validation.tolerance
    candidate = candidate if candidate is not None else run_over(run, validation)
    comparison = compare(spec, validation, reference, candidate, tol.atol, tol.rtol)
    gate = evaluate(comparison, spec.gate, spec.output_kinds)
    notes: list[str] = []
    if batch_dependent and gate.passed:
        single = validation.rebatch(1)
        alone = compare(spec, single, rebatch_outputs(reference, 1), run_over(run, single), tol.atol, tol.rtol)
        gate_alone = evaluate(alone, spec.gate, spec.output_kinds)
        notes.append("batch-dependent outputs: gated batched and one sample at a time")
        if not gate_alone.passed:
            notes.append("passed batched, failed one sample at a time: " + "; ".join(gate_alone.failures))
        if not gate_alone.passed or _worst_cosine(alone) < _worst_cosine(comparison):
            comparison, gate = alone, gate_alone
    if served is not None and gate.passed:
        forms = [("as served (padded to the serving buckets)", served.data, served.reference)]
        if batch_dependent:
            forms.append(("as served, one request at a time", served.data.rebatch(1), rebatch_outputs(served.reference, 1)))
        for label, data, ref in forms:
            seen = compare(spec, data, ref, run_over(run, data), tol.atol, tol.rtol)
            gate_seen = evaluate(seen, spec.gate, spec.output_kinds)
            notes.append(f"gated {label}: worst cosine {_worst_cosine(seen):.5f}")
            if not gate_seen.passed:
                notes.append(f"failed {label}: " + "; ".join(gate_seen.failures))
                return seen, gate_seen, notes
    return comparison, gate, notes


def _worst_cosine(comparison: Comparison) -> float:
    return min(m.min_cosine for m in comparison.outputs.values())


def gate_file(ctx: BuildContext, v: VariantSpec, path: Path, outcome: VariantOutcome) -> None:
    """Run the variant file at `path` in its runtime over the validation data and record the gate's decision in
    `outcome` (a failure to run is an 'error' outcome, not a failed build)."""
    converter = CONVERTERS[v.kind]
    try:
        runtime = open_runtime(
            converter.runtime,
            path,
            ctx.inputs,
            ctx.outputs,
            timing_input(ctx.validation, ctx.spec.max_batch_size),
            ctx.spec.serving.intra_op_threads,
            ort=ctx.ort,
        )
        candidate = run_over(runtime.run, ctx.validation)
    except Exception as e:  # a failed run rejects this variant, not the build
        outcome.status, outcome.reason = "error", f"{type(e).__name__}: {str(e).strip()[:600]}"
        return
    outcome.file, outcome.file_sha256, outcome.size_bytes = str(path), sha256_file(path), path.stat().st_size
    outcome.device, outcome.memory_mb = runtime.device, round(runtime.memory_mb, 1)
    outcome.measured_in = runtime.runtime_label
    comparison, gate, notes = check_variant(
        ctx.spec, ctx.validation, ctx.reference, runtime.run, converter.batch_dependent, candidate, ctx.served
    )
    outcome.notes.extend(notes)
    outcome.comparison = comparison.to_dict()
    outcome.gate = gate.to_dict()
    outcome.status = "passed" if gate.passed else "rejected"
    outcome.reason = "" if gate.passed else "; ".join(gate.failures)
    if gate.passed and converter.exact and not comparison.within_tolerance:
        outcome.status = "rejected"
        outcome.reason = (
            f"claims FP32's answers but is outside the validation tolerance (atol {comparison.atol:g}, rtol "
            f"{comparison.rtol:g}): " + ", ".join(f"{n} max abs {m.max_abs:.3g}" for n, m in comparison.outputs.items())
        )
