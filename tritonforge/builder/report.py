"""build_report.json and build_report.md: one row per variant, the gate decision, speed, and how to reproduce it."""

from __future__ import annotations

import json
from pathlib import Path

from tritonforge.errors import RepositoryError

REPORT_JSON = "build_report.json"
REPORT_MD = "build_report.md"
VALIDATION_NPZ = "validation_inputs.npz"
REFERENCE_NPZ = "reference_outputs.npz"
CALIBRATION_NPZ = "calibration_inputs.npz"
PUBLIC_INPUTS_NPZ = "public_inputs.npz"  # samples of what clients send to the public model (perf input data)
PROBE_REQUEST = "probe_request.json"  # one held-out sample as a KServe v2 request (tritonforge/server/probe.py)
PROBE_EXPECTED = "probe_expected.json"  # its FP32 reference, output kinds and thresholds (build/probe_sample.py)


def recheck_command(repo: Path, model: str, variant_id: str) -> str:
    """One line that re-runs a variant's gate check from the files beside the report, from any directory."""
    import shlex

    return f"python -m tritonforge.builder.recheck {shlex.quote(str(Path(repo).absolute()))} {model} {variant_id}"


def _fmt(value, spec: str = ".3g", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _metric(v: dict, key: str):
    comp = v.get("comparison") or {}
    outputs = list((comp.get("outputs") or {}).values())
    if not outputs:
        return None
    if key == "min_cosine":
        return min(o["min_cosine"] for o in outputs)
    if key == "top1":
        vals = [o["top1_agreement"] for o in outputs if o.get("top1_agreement") is not None]
        return min(vals) if vals else None
    if key == "max_abs":
        return max(o["max_abs"] for o in outputs)
    if key == "mean_rel":
        return max(o["mean_rel"] for o in outputs)
    return None


def to_markdown(report: dict) -> str:
    """The human-readable report."""
    batches = [str(b) for b in report["timing"]["batch_sizes"]]
    primary = next(v for v in report["variants"] if v["id"] == report["primary"])
    classes = report.get("class_score_outputs") or []
    gate = report["gate"]
    kinds = report.get("output_kinds") or {}
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
    lines = [
        f"# Build report: {report['model']}",
        "",
        f"Primary variant: **{primary['id']}** (served as `{primary['published_as']}`). Reference: ONNX FP32 on the "
        f"held-out validation data ({report['validation']['samples']} samples from `{report['validation']['origin']}`).",
        "Gate: " + "; ".join(criteria) + ".",
        "Timing: each variant in its own runtime"
        + (f" ({report['repository_check']['runtime']} for ONNX)" if report.get("repository_check") else "")
        + f" on {report['hardware']['cpu']['model']} "
        f"({report['hardware']['cpu']['cores']} cores){', GPU ' + report['hardware']['gpu']['name'] if report['hardware']['gpu'].get('name') else ''}; "
        "windows until stable, variants interleaved, speed-ups against FP32 measured in the same run.",
        "",
    ]
    header = ["variant", "runtime", "size MB", "max abs", "mean rel", "min cosine", "top-1", "accuracy", "gate"]
    for b in batches:
        header += [f"p50 ms b{b}", f"p95 ms b{b}", f"infer/s b{b}", f"speed-up b{b}"]
    header += ["mem MB", "published as"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in report["variants"]:
        acc = (v.get("comparison") or {}).get("accuracy")
        gate = {"passed": "pass", "rejected": "FAIL", "skipped": "skipped", "error": "error"}[v["status"]]
        row = [
            v["id"] + (" (search)" if v.get("search") else ""),
            v["runtime"],
            _fmt(v["size_bytes"] / 2**20 if v["size_bytes"] else None, ".2f"),
            _fmt(_metric(v, "max_abs")),
            _fmt(_metric(v, "mean_rel")),
            _fmt(_metric(v, "min_cosine"), ".5f"),
            _fmt(_metric(v, "top1"), ".4f"),
            _fmt(acc["candidate"] if acc else None, ".4f"),
            gate,
        ]
        for b in batches:
            t = v.get("timing", {}).get(b)
            row += [
                _fmt(t["p50_ms"] if t else None, ".3f"),
                _fmt(t["p95_ms"] if t else None, ".3f"),
                _fmt(t["throughput"] if t else None, ".0f"),
                _fmt(v.get("speedup", {}).get(b), ".2f") + ("x" if v.get("speedup", {}).get(b) else ""),
            ]
        row += [_fmt(v.get("memory_mb"), ".1f"), v.get("published_as") or "-"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    kinds = report.get("output_kinds") or {}
    if len(kinds) > 1:  # each output's own numbers: the gate judges each by what it is
        lines += [
            "## Per output",
            "",
            "| variant | output | kind | max abs | mean rel | min cosine | top-1 |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in report["variants"]:
            for name, o in ((v.get("comparison") or {}).get("outputs") or {}).items():
                lines.append(
                    f"| {v['id']} | {name} | {kinds.get(name, '-')} | {_fmt(o['max_abs'])} | "
                    f"{_fmt(o['mean_rel'])} | {_fmt(o['min_cosine'], '.5f')} | "
                    f"{_fmt(o.get('top1_agreement'), '.4f')} |"
                )
        lines.append("")
    not_passed = [v for v in report["variants"] if v["status"] != "passed"]
    if not_passed:
        lines += ["## Not published", ""]
        lines += [f"- **{v['id']}** ({v['status']}): {v['reason']}" for v in not_passed]
        lines.append("")
    search = report.get("int8_search")
    if search and search.get("enabled"):
        lines += [
            "## INT8 search",
            "",
            f"Strategy: {search.get('strategy', 'grid')}, {search.get('evaluations', len(search['tried']))} gate evaluations.",
        ]
        if search["winner"]:
            lines.append(f"Fastest passing point: **{search['winner']}**, published as `{search['published_as']}`.")
        else:
            best = search.get("best")
            lines.append("No INT8 point passed the gate." + (f" Closest: **{best['id']}** ({best['reason']})." if best else ""))
        steps = (search.get("path") or {}).get("steps") or []
        if steps:
            lines += [
                "",
                "| step | point | start | nodes in float | worst gate margin | passed | kept |",
                "|---|---|---|---|---|---|---|",
            ]
            for i, st in enumerate(steps, 1):
                floats = ", ".join(st["excluded"][-3:]) + (" ..." if len(st["excluded"]) > 3 else "")
                note = " (failed alone only)" if st.get("batched_only") else ""
                lines.append(
                    f"| {i} | {st['id']} | {st['start']} | {len(st['excluded'])}{': ' + floats if floats else ''} | "
                    f"{'-' if st['margin'] is None else format(st['margin'], '+.4f')} | {'yes' if st['passed'] else 'no'}{note} | {'yes' if st['kept'] else 'undone'} |"
                )
        lines.append("")
    check = report.get("repository_check")
    if check:
        lines += [
            "## Repository check",
            "",
            f"Before publication ({check['seconds']:.1f}s). Every ONNX variant's gate figures and timings come "
            f"from {check['runtime']}.",
            "",
            "| model | checked by | result |",
            "|---|---|---|",
        ]
        lines += [f"| {c['model']} | {c['how']} | {c['detail']} |" for c in check["models"]]
        lines.append("")
    notes = report.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += [
        "## Reproduce a gate decision",
        "",
        f"Validation inputs, FP32 reference outputs and calibration inputs are stored beside this report "
        f"(`{VALIDATION_NPZ}`, `{REFERENCE_NPZ}`, `{CALIBRATION_NPZ}`). Each command re-runs one check and "
        "exits 0 when it reaches the recorded decision:",
        "",
        "```",
    ]
    lines += [report["reproduce"][v["id"]] for v in report["variants"]]
    lines += ["```", ""]
    return "\n".join(lines)


def read_report(repo: Path, model: str) -> dict:
    path = Path(repo) / model / REPORT_JSON
    if not path.is_file():
        raise RepositoryError(f"no build report for model '{model}' in {repo} ({path} not found); build it first")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise RepositoryError(f"{path}: unreadable build report: {e}") from None
