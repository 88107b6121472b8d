"""The build report: assembled once from what the build decided (its type: tritonforge/repository/build_report.py),
rendered as build_report.md (one row per variant, the gate decision, speed, and how to reproduce it), and the
files kept beside it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge import __version__
from tritonforge.builder.data import Dataset, save_batches
from tritonforge.builder.int8_search import worst_margin
from tritonforge.builder.probe_sample import ProbeSample
from tritonforge.builder.variants import PublishOrder, VariantsResult
from tritonforge.builder.verify import Outputs
from tritonforge.hardware import cpu_info, gpu_info
from tritonforge.repository.build_report import (
    BuildReport,
    ExportSection,
    HardwareSection,
    Int8SearchSection,
    RepositoryCheckSection,
    SearchBest,
    ServingSection,
    TimingSection,
    ValidationSection,
    VariantEntry,
)
from tritonforge.repository.files import (
    CALIBRATION_NPZ,
    PROBE_EXPECTED,
    PROBE_REQUEST,
    PUBLIC_INPUTS_NPZ,
    REFERENCE_NPZ,
    REPORT_JSON,
    REPORT_MD,
    VALIDATION_NPZ,
)
from tritonforge.spec import BuildSpec

_GATE_WORDS = {"passed": "pass", "rejected": "FAIL", "skipped": "skipped", "error": "error"}


def recheck_command(repo: Path, model: str, variant_id: str) -> str:
    """One line that re-runs a variant's gate check from the files beside the report, from any directory."""
    return f"python -m tritonforge.builder.recheck {shlex.quote(str(Path(repo).absolute()))} {model} {variant_id}"


def _int8_search_section(spec: BuildSpec, result: VariantsResult, order: PublishOrder) -> Int8SearchSection | None:
    if not spec.int8_search.enabled:
        return None
    tried = [o for o in result.outcomes if o.search]
    best = max((o for o in tried if o.status == "rejected"), key=worst_margin, default=None)
    winner = result.search_winner
    return Int8SearchSection(
        enabled=True,
        strategy=spec.int8_search.strategy,
        tried=[o.id for o in tried],
        evaluations=len(tried),
        winner=winner,
        published_as=order.names[winner] if winner else None,
        best=SearchBest(id=best.id, reason=best.reason) if best and not winner else None,
        path=result.search_path,
    )


def assemble(
    *,
    spec: BuildSpec,
    repo: Path,
    export: dict[str, Any],
    validation: Dataset,
    result: VariantsResult,
    order: PublishOrder,
    serving: ServingSection,
    repository_check: RepositoryCheckSection,
) -> BuildReport:
    """The build's report, once its variants are decided, published in `order`, and the repository checked."""
    return BuildReport(
        model=spec.name,
        tritonforge_version=__version__,
        spec=spec.model_dump(mode="json"),
        spec_hash=spec.content_hash(),
        hardware=HardwareSection(cpu=cpu_info(), gpu=gpu_info().to_dict()),
        export=ExportSection.model_validate(export),
        validation=ValidationSection(samples=len(validation), origin=validation.origin),
        gate=spec.gate.model_dump(mode="json"),
        class_score_outputs=spec.class_score_outputs,
        output_kinds=spec.output_kinds,
        timing=TimingSection.model_validate(
            {
                **spec.timing.model_dump(mode="json"),
                "batch_sizes": spec.timing_batch_sizes,
                "reused_from_previous_build": result.timing_reused,
                "speedups_against": result.reference,
            }
        ),
        variants=[
            VariantEntry.model_validate(o.to_dict() | {"published_as": order.names.get(o.id, "")}) for o in result.outcomes
        ],
        primary=result.primary,
        int8_search=_int8_search_section(spec, result, order),
        notes=result.notes,
        reproduce={o.id: recheck_command(repo, spec.name, o.id) for o in result.outcomes},
        serving=serving,
        repository_check=repository_check,
    )


def _fmt(value: Any, spec: str = ".3g", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _criteria(report: BuildReport) -> list[str]:
    """The gate's criteria in words, as the spec set them for this model's outputs."""
    gate = report.gate
    classes = report.class_score_outputs or []
    kinds = report.output_kinds or {}
    embeddings = [n for n, k in kinds.items() if k == "embedding"] if kinds else None
    regressions = [n for n, k in kinds.items() if k == "regression"]
    criteria = []
    if embeddings is None or embeddings:
        criteria.append(
            f"min cosine >= {gate['min_cosine']} on "
            + (", ".join(embeddings) if embeddings else "outputs other than class scores")
        )
    if regressions:
        criteria.append(f"mean relative error <= {gate.get('max_mean_rel')} on {', '.join(regressions)}")
    if gate.get("outputs"):
        criteria.append(
            "per-output thresholds: "
            + "; ".join(
                f"{n}: " + ", ".join(f"{k} {v}" for k, v in o.items() if v is not None) for n, o in gate["outputs"].items()
            )
        )
    if classes:
        criteria.append(
            f"top-1 agreement >= {gate['min_top1_agreement']} and accuracy drop <= "
            f"{gate['max_accuracy_drop']} on class scores ({', '.join(classes)})"
        )
    if gate.get("max_abs") is not None:
        criteria.append(f"max abs <= {gate['max_abs']}")
    return criteria


def _header(report: BuildReport) -> list[str]:
    primary = report.primary_variant
    cpu, gpu = report.hardware.cpu, report.hardware.gpu
    check = report.repository_check
    return [
        f"# Build report: {report.model}",
        "",
        f"Call `{report.model}`, the public model. Primary variant: **{primary.id}** (its compute model "
        f"`{primary.published_as}`, which `{report.model}` calls; not for clients). Reference: ONNX FP32 on the "
        f"held-out validation data ({report.validation.samples} samples from `{report.validation.origin}`).",
        "Gate: " + "; ".join(_criteria(report)) + ".",
        "Timing: each variant in its own runtime" + (f" ({check.runtime} for ONNX)" if check else "") + f" on {cpu['model']} "
        f"({cpu['cores']} cores){', GPU ' + gpu['name'] if gpu.get('name') else ''}; "
        "windows until stable, variants interleaved, speed-ups against "
        + (
            "FP32"
            if report.timing.speedups_against == "onnx_fp32"
            else f"{report.timing.speedups_against} (FP32's answers, the fastest way to compute them)"
        )
        + " measured in the same run.",
        "",
    ]


def _variant_row(v: VariantEntry, batches: list[str]) -> str:
    acc = v.accuracy()
    row = [
        v.id + (" (search)" if v.search else ""),
        v.runtime,
        _fmt(v.size_bytes / 2**20 if v.size_bytes else None, ".2f"),
        _fmt(v.max_abs()),
        _fmt(v.mean_rel()),
        _fmt(v.min_cosine(), ".5f"),
        _fmt(v.top1(), ".4f"),
        _fmt(acc, ".4f"),
        _GATE_WORDS[v.status],
    ]
    for b in batches:
        t = v.timing.get(b)
        speedup = v.speedup.get(b)
        row += [
            _fmt(t["p50_ms"] if t else None, ".3f"),
            _fmt(t["p95_ms"] if t else None, ".3f"),
            _fmt(t["throughput"] if t else None, ".0f"),
            _fmt(speedup, ".2f") + ("x" if speedup else ""),
        ]
    row += [_fmt(v.memory_mb, ".1f"), v.published_as or "-"]
    return "| " + " | ".join(row) + " |"


def _variants_table(report: BuildReport) -> list[str]:
    batches = [str(b) for b in report.timing.batch_sizes]
    header = ["variant", "runtime", "size MB", "max abs", "mean rel", "min cosine", "top-1", "accuracy", "gate"]
    for b in batches:
        header += [f"p50 ms b{b}", f"p95 ms b{b}", f"infer/s b{b}", f"speed-up b{b}"]
    header += ["mem MB", "published as"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [_variant_row(v, batches) for v in report.variants]
    lines.append("")
    return lines


def _per_output(report: BuildReport) -> list[str]:
    """Each output's own numbers (only with more than one output): the gate judges each by what it is."""
    kinds = report.output_kinds or {}
    if len(kinds) <= 1:
        return []
    lines = [
        "## Per output",
        "",
        "| variant | output | kind | max abs | mean rel | min cosine | top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in report.variants:
        for name, o in v.per_output().items():
            lines.append(
                f"| {v.id} | {name} | {kinds.get(name, '-')} | {_fmt(o['max_abs'])} | "
                f"{_fmt(o['mean_rel'])} | {_fmt(o['min_cosine'], '.5f')} | "
                f"{_fmt(o.get('top1_agreement'), '.4f')} |"
            )
    lines.append("")
    return lines


def _not_published(report: BuildReport) -> list[str]:
    not_passed = [v for v in report.variants if v.status != "passed"]
    if not not_passed:
        return []
    return ["## Not published", "", *[f"- **{v.id}** ({v.status}): {v.reason}" for v in not_passed], ""]


def _search_step(i: int, st: dict[str, Any]) -> str:
    floats = ", ".join(st["excluded"][-3:]) + (" ..." if len(st["excluded"]) > 3 else "")
    note = " (failed alone only)" if st.get("batched_only") else ""
    return (
        f"| {i} | {st['id']} | {st['start']} | {len(st['excluded'])}{': ' + floats if floats else ''} | "
        f"{'-' if st['margin'] is None else format(st['margin'], '+.4f')} | {'yes' if st['passed'] else 'no'}{note} | {'yes' if st['kept'] else 'undone'} |"
    )


def _int8_search(search: Int8SearchSection | None) -> list[str]:
    if search is None or not search.enabled:
        return []
    lines = ["## INT8 search", "", f"Strategy: {search.strategy}, {search.evaluation_count} gate evaluations."]
    if search.winner:
        lines.append(f"Fastest passing point: **{search.winner}**, published as `{search.published_as}`.")
    else:
        best = search.best
        lines.append("No INT8 point passed the gate." + (f" Closest: **{best.id}** ({best.reason})." if best else ""))
    steps = search.steps()
    if steps:
        lines += [
            "",
            "| step | point | start | nodes in float | worst gate margin | passed | kept |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_search_step(i, st) for i, st in enumerate(steps, 1)]
    lines.append("")
    return lines


def _repository_check(check: RepositoryCheckSection | None) -> list[str]:
    if not check:
        return []
    lines = [
        "## Repository check",
        "",
        f"Before publication ({check.seconds:.1f}s). Every ONNX variant's gate figures and timings come from {check.runtime}.",
        "",
        "| model | checked by | result |",
        "|---|---|---|",
    ]
    lines += [f"| {c.model} | {c.how} | {c.detail} |" for c in check.models]
    lines.append("")
    return lines


def _notes(report: BuildReport) -> list[str]:
    return ["## Notes", "", *[f"- {n}" for n in report.notes], ""] if report.notes else []


def _kept_files(report: BuildReport) -> dict[str, str]:
    """The data files report_files keeps beside the report, by what they hold: calibration inputs only for a
    build whose spec has calibration data."""
    kept = {"validation inputs": VALIDATION_NPZ, "FP32 reference outputs": REFERENCE_NPZ}
    if report.spec.get("calibration"):
        kept["calibration inputs"] = CALIBRATION_NPZ
    return kept


def _reproduce(report: BuildReport) -> list[str]:
    kept = _kept_files(report)
    what = ", ".join(list(kept)[:-1]) + " and " + list(kept)[-1]
    lines = [
        "## Reproduce a gate decision",
        "",
        f"{what[0].upper() + what[1:]} are stored beside this report "
        f"({', '.join(f'`{name}`' for name in kept.values())}). Each command re-runs one check and "
        "exits 0 when it reaches the recorded decision:",
        "",
        "```",
    ]
    lines += [report.reproduce[v.id] for v in report.variants]
    lines += ["```", ""]
    return lines


def to_markdown(report: BuildReport) -> str:
    """The human-readable report."""
    lines = _header(report) + _variants_table(report) + _per_output(report) + _not_published(report)
    lines += _int8_search(report.int8_search) + _repository_check(report.repository_check)
    lines += _notes(report) + _reproduce(report)
    return "\n".join(lines)


def report_files(
    work: Path,
    validation: Dataset,
    calibration: Dataset | None,
    reference: Outputs,
    report: BuildReport,
    texts: list[str] | None,
    text_input: str | None,
    probe: ProbeSample,
) -> dict[str, Path | bytes]:
    """Files beside the report in the public model's directory (npz files written to `work`)."""
    validation.save_npz(work / VALIDATION_NPZ)
    save_batches(work / REFERENCE_NPZ, reference.batches)
    files: dict[str, Path | bytes] = {VALIDATION_NPZ: work / VALIDATION_NPZ, REFERENCE_NPZ: work / REFERENCE_NPZ}
    if calibration is not None:
        calibration.save_npz(work / CALIBRATION_NPZ)
        files[CALIBRATION_NPZ] = work / CALIBRATION_NPZ
    if texts is not None and text_input is not None:
        save_batches(work / PUBLIC_INPUTS_NPZ, [{text_input: np.array([[t]], dtype=object)} for t in texts])
        files[PUBLIC_INPUTS_NPZ] = work / PUBLIC_INPUTS_NPZ
    files[PROBE_REQUEST] = probe.request  # for the readiness probe (tritonforge/server/probe.py)
    if probe.expected is not None:
        files[PROBE_EXPECTED] = probe.expected
    files[REPORT_JSON] = report.to_json().encode()
    files[REPORT_MD] = to_markdown(report).encode()
    return files
