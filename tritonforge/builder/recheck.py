"""Re-run one variant's gate check from the files a build left beside its report.

    python -m tritonforge.builder.recheck REPO MODEL VARIANT_ID

Uses the stored validation inputs and FP32 reference outputs; a published variant is loaded from the
repository, an unpublished one is converted again from the FP32 ONNX with the stored calibration inputs.
Prints the metrics and the decision; exits 0 when the recorded decision is reproduced, 1 when not.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tritonforge.builder.converters import CONVERTERS, ConversionJob, variant_spec
from tritonforge.builder.converters.base import conversion_source
from tritonforge.builder.data import Dataset
from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.variants import check_variant
from tritonforge.builder.verify import Outputs
from tritonforge.errors import RepositoryError, TritonforgeError
from tritonforge.repository.batches import load_batches
from tritonforge.repository.build_report import read_report
from tritonforge.repository.files import CALIBRATION_NPZ, REFERENCE_NPZ, REPORT_JSON, VALIDATION_NPZ
from tritonforge.repository.reader import Repository
from tritonforge.spec import parse_spec


def recheck(repo: Path, model: str, variant_id: str) -> tuple[bool, str]:
    """(reproduced, text): whether the gate reaches the recorded decision again, and what it saw."""
    report = read_report(repo, model)
    entry = report.variant(variant_id)
    if entry is None:
        ids = ", ".join(v.id for v in report.variants)
        raise RepositoryError(f"no variant '{variant_id}' in the report of '{model}' (variants: {ids})")
    spec = parse_spec(report.spec, source=f"{model}/{REPORT_JSON}")
    converter = CONVERTERS[entry.kind]
    unavailable = converter.unavailable()
    if entry.status == "skipped" or unavailable:
        now = f"skipped ({unavailable})" if unavailable else "available"
        return (
            entry.status == "skipped" and unavailable is not None
        ), f"{variant_id}: {entry.status} ({entry.reason}); now: {now}"
    base = Path(repo) / model
    validation = Dataset.load_npz(base / VALIDATION_NPZ)
    reference = Outputs(load_batches(base / REFERENCE_NPZ)[0])
    with tempfile.TemporaryDirectory() as tmp:
        job = None
        published = Repository(repo)
        if entry.published_as:
            path = published.file(entry.published_as)
        else:
            path = Path(tmp) / f"{variant_id}{converter.suffix}"
            calibration = Dataset.load_npz(base / CALIBRATION_NPZ) if (base / CALIBRATION_NPZ).exists() else None
            fp32 = published.file(next(m for m in published.rungs(model) if published.role(m).variant == "onnx_fp32"))
            options = {k: v for k, v in entry.options.items() if k != "kind"}
            variant = variant_spec(entry.kind, **options)
            source = conversion_source(converter, variant, fp32, Path(tmp), validation, [])
            job = ConversionJob(spec, variant, source, path, Path(tmp), calibration, validation=validation)
        try:  # a recorded error is reproduced by failing again where the build failed: conversion or run
            if job is not None:
                converter.convert(job)
            runtime = open_runtime(converter.runtime, path, [t.name for t in spec.inputs], [t.name for t in spec.outputs])
            _comparison, result, _notes = check_variant(spec, validation, reference, runtime.run, converter.batch_dependent)
        except Exception as e:
            if entry.status != "error":
                raise
            return True, f"{variant_id}: error again: {type(e).__name__}: {str(e).strip()[:600]}; recorded: {entry.reason}"
    verdict = "passed" if result.passed else "rejected"
    lines = [f"{variant_id} ({path.name}): {verdict}; recorded: {entry.status}"]
    lines += [f"  {c.describe()}" for c in result.checks]
    return verdict == entry.status, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__)
        return 2
    try:
        reproduced, text = recheck(Path(argv[0]), argv[1], argv[2])
    except TritonforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(text)
    print("decision reproduced" if reproduced else "decision NOT reproduced")
    return 0 if reproduced else 1


if __name__ == "__main__":
    raise SystemExit(main())
