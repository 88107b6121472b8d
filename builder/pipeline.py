"""`tritonforge build`: spec -> source model -> verified ONNX -> Triton repository, atomically, or nothing if unchanged."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from builder import __version__, python_models
from builder.data import Dataset, load_dataset
from builder.errors import ExportError, RepositoryError, VerificationError
from builder.exporters import torch2onnx
from builder.hashing import combine, sha256_file
from builder.onnx_graph import finalize, load_checked
from builder.ort_runtime import OrtModel
from builder.repository.manifest import Manifest, read_manifest, tool_versions
from builder.repository.transaction import RepositoryTransaction
from builder.serving_graph import plan_models
from builder.sources import load_source, source_files
from builder.spec import BuildSpec, load_spec
from builder.verify import Comparison, compare, run_over


class Reporter(Protocol):
    """Receives progress; the CLI renders it with rich, the library default is silent."""

    def stage(self, name: str) -> contextlib.AbstractContextManager: ...

    def info(self, message: str) -> None: ...


class SilentReporter:
    def stage(self, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def info(self, message: str) -> None:
        pass


@dataclass
class BuildOutcome:
    """What a build did."""

    spec: BuildSpec
    repo: Path
    noop: bool
    manifest: Manifest
    export_check: dict | None = None
    exporter: str | None = None
    notes: list[str] = field(default_factory=list)


def _fingerprint_inputs(spec: BuildSpec, validation: Dataset) -> dict[str, str]:
    inputs = {"spec": spec.content_hash(), "validation.data": validation.fingerprint()}
    for name, path in source_files(spec).items():
        inputs[name] = sha256_file(path)
    for path in [python_models.model_source("ort_runner"), *python_models.helper_sources()]:
        inputs[f"python_models/{path.name}"] = sha256_file(path)
    return inputs


def _fp32_onnx(spec: BuildSpec, validation: Dataset, work: Path, reporter: Reporter) -> tuple[Path, str, list[str], Comparison]:
    """Export (or adopt) the FP32 ONNX model and verify it against the source model on the validation data."""
    out = work / "model_fp32.onnx"
    with reporter.stage("load source model"):
        source = load_source(spec)
    with reporter.stage("export to ONNX"):
        if spec.source.kind == "onnx":
            finalize(load_checked(spec.resolve(spec.source.path)), spec, out)  # type: ignore[arg-type]
            exporter, notes = "none (ONNX source)", []
        else:
            example = validation.rebatch(2).batches[0]
            if len(next(iter(example.values()))) < 2:
                raise ExportError("validation data must hold at least 2 samples (an export example batch)")
            result = torch2onnx.export(source, spec, example, out)
            exporter, notes = result.exporter, result.notes
    with reporter.stage("verify ONNX against the source model"):
        reference = run_over(source.run, validation)
        candidate = run_over(OrtModel(out, [t.name for t in spec.outputs]).run, validation)
        tol = spec.validation.tolerance
        check = compare(spec, validation, reference, candidate, tol.atol, tol.rtol)
    if not check.within_tolerance:
        worst = max(check.outputs.values(), key=lambda m: m.violation)
        raise VerificationError(
            f"exported ONNX does not reproduce the source model on {len(validation)} validation samples: "
            f"output '{worst.name}' max abs error {worst.max_abs:.3g}, max rel error {worst.max_rel:.3g} "
            f"exceeds atol={tol.atol:g}, rtol={tol.rtol:g} (worst element at {worst.violation:.3g}x the tolerance)"
        )
    return out, exporter, notes, check


def build(spec_path: str | Path, repo: str | Path, *, force: bool = False, reporter: Reporter | None = None) -> BuildOutcome:
    """Build one spec into `repo`. Unchanged inputs -> no work and no file touched. Errors leave `repo` as it was."""
    rep = reporter or SilentReporter()
    repo = Path(repo).absolute()
    with rep.stage("read spec and validation data"):
        spec = load_spec(spec_path)
        validation = load_dataset(spec, spec.validation.data, "validation.data")
        validation = validation.rebatch(min(spec.validation.batch_size, spec.max_batch_size))
        inputs = _fingerprint_inputs(spec, validation)
        tools = tool_versions()
        fingerprint = combine({"tritonforge": __version__, **inputs, **{f"tool:{k}": v for k, v in tools.items()}})
    old = read_manifest(repo, spec.name)
    if old is not None and not force and old.fingerprint == fingerprint and old.intact(repo):
        rep.info(f"{spec.name}: up to date (fingerprint {fingerprint[:12]}), nothing to do")
        return BuildOutcome(spec, repo, True, old)

    work = Path(tempfile.mkdtemp(prefix="tritonforge-build-"))
    try:
        fp32, exporter, notes, check = _fp32_onnx(spec, validation, work, rep)
        report = {"export": {"exporter": exporter, "notes": notes, "check": check.to_dict(), "samples": len(validation)}}
        models = plan_models(spec, fp32, fp32, {})
        owned = {m.name for m in models}
        _refuse_foreign_overwrite(repo, owned, old)
        manifest = Manifest(
            name=spec.name, tritonforge_version=__version__, fingerprint=fingerprint, spec_hash=spec.content_hash(),
            inputs=inputs, tools=tools, models=sorted(owned),
        )
        with rep.stage("write Triton repository"):
            with RepositoryTransaction(repo, replace=owned | set(old.models if old else [])) as txn:
                assert txn.path is not None
                for model in models:
                    model.write(txn.path)
                manifest.stages = {"export": report["export"]}
                manifest.hash_artifacts(txn.path)
                manifest.write(txn.path)
                txn.commit()
        return BuildOutcome(spec, repo, False, manifest, check.to_dict(), exporter, notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _refuse_foreign_overwrite(repo: Path, owned: set[str], old: Manifest | None) -> None:
    """Never replace a model directory that another build (or a person) put there."""
    mine = set(old.models) if old else set()
    for name in sorted(owned - mine):
        if (repo / name).exists():
            raise RepositoryError(
                f"{repo / name} exists and was not written by this spec's last build; "
                "rename the spec's model or remove that directory"
            )


def iter_specs(paths: list[Path]) -> Iterator[Path]:
    """Spec files from files and directories (every *.yaml / *.yml directly inside a directory)."""
    for p in paths:
        if p.is_dir():
            yield from sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml")))
        else:
            yield p
