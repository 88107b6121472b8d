"""`tritonforge build`: spec -> source model -> verified ONNX -> precision variants gated and timed -> Triton
repository, written atomically; nothing at all when nothing changed, and unchanged stages reused."""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tritonforge import __version__
from tritonforge.builder import probe_sample
from tritonforge.builder.check_requests import check_requests, sample_texts
from tritonforge.builder.export_stage import export_stage, onnx_runner
from tritonforge.builder.gate import small_validation_note
from tritonforge.builder.inputs import BuildInputs, read_inputs
from tritonforge.builder.report import assemble, report_files
from tritonforge.builder.served_data import served_dataset
from tritonforge.builder.serving_check import ServingCheck
from tritonforge.builder.serving_graph import Names, ServingPlan, ensemble_compute, plan_models
from tritonforge.builder.sources import source_of
from tritonforge.builder.stages import StageCache
from tritonforge.builder.triton_cache import triton_cache_refusal, triton_cache_wanted
from tritonforge.builder.variants import (
    BuildContext,
    PublishOrder,
    Reporter,
    ServedData,
    VariantBuilder,
    VariantOutcome,
    publish_order,
)
from tritonforge.builder.verify import run_over
from tritonforge.errors import RepositoryError
from tritonforge.hashing import combine, sha256_bytes
from tritonforge.repository.build_report import BuildReport, RepositoryCheckSection, ServingSection
from tritonforge.repository.layout import StagedFiles
from tritonforge.repository.manifest import Manifest, read_manifest
from tritonforge.repository.publish import Publication, RepositoryLock, check_root, describe_work_area
from tritonforge.spec import PYTHON_CACHE_KINDS, BuildSpec

__all__ = ["BuildOutcome", "Reporter", "SilentReporter", "build", "iter_specs"]


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
    report: BuildReport | None = None
    export_check: dict | None = None
    exporter: str | None = None
    notes: list[str] = field(default_factory=list)
    # False for an ONNX source: the file is the FP32 reference, and export_check compares it with itself (the
    # build's ONNX Runtime against the serving one), not an export with its source
    exported: bool = True

    def next_lines(self) -> list[str]:
        """The build's last words: the model to call (the public one; the others are its compute steps) and the
        command to run next."""
        name, repo = self.spec.name, self.repo
        first = self.spec.public_inputs[0].name
        others = [m for m in self.manifest.models if m != name]
        return [
            f"call: '{name}', the public model (gRPC: tritonforge.client.Client('127.0.0.1:8001').infer('{name}', "
            f"{{'{first}': ...}}))" + (f"; {', '.join(others)} are its compute steps, not for clients" if others else ""),
            f"next: tritonforge serve {repo}   (a server already serving {repo}: tritonforge reload {name} --url HOST:8001)",
        ]


def _serving_section(spec: BuildSpec, order: PublishOrder, plan: ServingPlan, probe: probe_sample.ProbeSample) -> ServingSection:
    refusal = triton_cache_refusal(spec) if triton_cache_wanted(spec) else None
    ensemble = spec.serving.topology == "ensemble"
    return ServingSection(
        rungs=[o.published_as for o in order.published],
        in_process_runner=plan.cpu_variant.id,
        cache=spec.serving.cache.kind,
        triton_cache=("enabled" if refusal is None else f"not enabled: {refusal}") if triton_cache_wanted(spec) else None,
        topology="ensemble" if ensemble else None,
        compute_step=": ".join(ensemble_compute(spec, plan)[1:]) if ensemble else None,
        cache_version=plan.cache_version,
        probe=probe.to_dict(),
    )


def _serving_plan(inp: BuildInputs, published: list[VariantOutcome], notes: list[str]) -> ServingPlan:
    spec = inp.spec
    onnx = [o for o in published if o.runtime == "onnxruntime"]  # fastest first
    cpu = onnx[0]
    pin = spec.serving.router.cpu_variant
    if pin:
        pinned = [o for o in onnx if o.id == pin or o.published_as == Names(spec.name).variant(pin)]
        if pinned:
            cpu = pinned[0]
        else:
            notes.append(
                f"serving.router.cpu_variant '{pin}' is not a published ONNX variant; the in-process runner serves {cpu.id}"
            )
    fp32 = next(o for o in published if o.kind == "onnx_fp32")
    parts = {o.published_as: o.file_sha256 for o in published}
    if spec.preprocess is not None:  # a cache keyed on texts answers for the tokenizer too
        parts["preprocess"] = combine(
            {
                "file": inp.hashes["preprocess.tokenizer_file"],
                "settings": sha256_bytes(spec.preprocess.model_dump_json().encode()),
            }
        )
    version = combine(parts)[:16]
    return ServingPlan(published, cpu, fp32, version, inp.tokenizer_file)


def default_cache_note(spec: BuildSpec) -> str | None:
    """Said when the response cache is on only because the spec did not name one (Triton's is off by default)."""
    if "cache" in spec.serving.model_fields_set or spec.serving.cache.kind == "none":
        return None
    cache = spec.serving.cache
    return (
        f"response cache on by default ({cache.kind}, TTL {cache.ttl_s:g} s): the spec has no serving.cache; a hit "
        "answers an identical request without computing it. serving.cache: {kind: none} turns it off"
    )


def build(
    spec_path: str | Path,
    repo: str | Path,
    *,
    force: bool = False,
    reporter: Reporter | None = None,
    check: ServingCheck | None = None,
) -> BuildOutcome:
    """Build one spec into `repo`. Unchanged inputs -> no work and no file touched. Errors leave `repo` as it was.

    `check` proves the staged repository in the local tritonserver and gates in the serving runtime (one per
    build command, shared by its specs); without one, this build makes its own and closes it."""
    if check is None:
        with ServingCheck() as own:
            return build(spec_path, repo, force=force, reporter=reporter, check=own)
    rep = reporter or SilentReporter()
    repo = check_root(Path(repo))
    with _disk_full_is_said(repo):
        with rep.stage("read spec, validation and calibration data"):
            inp = read_inputs(spec_path, check.ort)
        # From reading the repository's state to publishing, builds of one repository take turns.
        with RepositoryLock(repo, on_wait=rep.info) as lock:
            outcome = _build_locked(inp, repo, force, rep, check, lock)
            if lock.announced and lock.area is not None:  # the first build of this repository: say what it made
                outcome.notes.append(describe_work_area(lock.area, repo))
            return outcome


@contextlib.contextmanager
def _disk_full_is_said(repo: Path) -> Iterator[None]:
    """A full disk anywhere in a build is one line and exit 2 (the repository is left as it was)."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise RepositoryError(
            f"no space left on a device while building into {repo}: {_free_space(repo)}; free "
            "space (a build needs room for its work files and one new copy of each model it "
            "publishes) and build again; the repository is unchanged"
        ) from None


def _free_space(repo: Path) -> str:
    """Free space where a build writes: beside the repository and in the temporary directory."""
    places = {"the repository": repo if repo.exists() else repo.parent, "work files": Path(tempfile.gettempdir())}
    out = []
    for label, path in places.items():
        with contextlib.suppress(OSError):
            out.append(f"{label} ({path}) has {shutil.disk_usage(path).free / 2**20:.1f} MiB free")
    return ", ".join(out)


def _build_locked(
    inp: BuildInputs, repo: Path, force: bool, rep: Reporter, check: ServingCheck, lock: RepositoryLock
) -> BuildOutcome:
    spec = inp.spec
    old = read_manifest(repo, spec.name)
    if old is not None and not force and old.fingerprint == inp.fingerprint and old.intact(repo):
        rep.info(f"{spec.name}: up to date (fingerprint {inp.fingerprint[:12]}), nothing to do")
        return BuildOutcome(spec, repo, True, old)
    stages = StageCache({} if force or old is None else old.stages)

    work = Path(tempfile.mkdtemp(prefix="tritonforge-build-"))
    try:
        fp32, export = export_stage(inp, work, stages, repo, rep, check.ort)
        export = export["result"]
        texts = sample_texts(spec)
        with rep.stage("FP32 reference outputs on the validation data"):
            fp32_run = onnx_runner(spec, fp32, check.ort)
            reference = run_over(fp32_run, inp.validation)
            served_data = served_dataset(spec, texts, inp.tokenizer_file)
            served = ServedData(served_data, run_over(fp32_run, served_data)) if served_data else None
        ctx = BuildContext(
            spec,
            fp32,
            inp.validation,
            reference,
            inp.calibration,
            work,
            stages,
            repo,
            inp.tools,
            rep,
            check.ort,
            served,
            subnormal_weights=sum(export.get("subnormal_weights", {}).values()),
        )
        result = VariantBuilder(ctx).run()
        if small := small_validation_note(len(inp.validation)):
            result.notes.insert(0, small)
        order = publish_order(result.outcomes, result.primary, result.search_winner, Names(spec.name).variant)
        published = order.published
        plan = _serving_plan(inp, published, result.notes)
        if note := default_cache_note(spec):
            result.notes.append(note)
        if triton_cache_wanted(spec) and (refusal := triton_cache_refusal(spec)):
            result.notes.append(f"Triton's response cache is not enabled: {refusal}")
        if spec.serving.topology == "ensemble":
            compute, why = ensemble_compute(spec, plan)[1:]
            result.notes.append(f"ensemble: {Names(spec.name).front} (checks, tokenizer) -> {compute}, {why}")
            if spec.serving.cache.kind in PYTHON_CACHE_KINDS:
                result.notes.append(
                    f"ensemble: serving.cache ({spec.serving.cache.kind}) is not used: an ensemble has no "
                    "tritonforge cache (serving.triton_cache is Triton's, where its key allows)"
                )
        version = (old.version + 1) if old else 1
        models = plan_models(spec, plan, version)
        owned = {m.name for m in models}
        _refuse_foreign_overwrite(repo, owned, old)
        with rep.stage(
            "load the staged models in tritonserver and ask the public model" if check.enabled else "check the staged configs"
        ):
            started = time.perf_counter()
            checked = check.check(spec, models, version, Path(plan.cpu_variant.file), check_requests(inp, texts))
            check_seconds = time.perf_counter() - started
        with rep.stage("choose the readiness probe's sample"):
            probe = probe_sample.choose(
                spec, probe_sample.candidates(spec, inp.validation, texts, inp.tokenizer_file), published, plan.fp32, check.ort
            )
        result.notes.extend(probe.notes)
        report = assemble(
            spec=spec,
            repo=repo,
            export=export,
            validation=inp.validation,
            result=result,
            order=order,
            serving=_serving_section(spec, order, plan, probe),
            repository_check=RepositoryCheckSection.model_validate(
                {
                    "models": [c.to_dict() for c in checked],
                    "seconds": round(check_seconds, 2),
                    "runtime": check.ort.label if check.ort else "onnxruntime (build environment)",
                }
            ),
        )
        text_input = spec.preprocess.text_input if spec.preprocess is not None else None
        files = report_files(work, inp.validation, inp.calibration, reference, report, texts, text_input, probe)
        # The report describes the check, so it joins the public model's directory after it (beside config.pbtxt).
        models = [replace(m, extra=files) if m.name == spec.name else m for m in models]
        manifest = Manifest(
            name=spec.name,
            tritonforge_version=__version__,
            fingerprint=inp.fingerprint,
            spec_hash=spec.content_hash(),
            inputs=inp.hashes,
            tools=inp.tools,
            version=version,
            roles={m.name: m.role for m in models},
            dropped=sorted(set(old.models if old else []) - owned),
            stages=result.stage_records(order.names),
            hardware=report.hardware.model_dump(),
        )
        with rep.stage("write Triton repository"):
            with Publication(repo, order=[m.name for m in models], remove=set(old.models if old else []), lock=lock) as pub:
                staged = StagedFiles()
                dirs = {m.name: m.write(pub.stage(m.name), manifest.version, staged) for m in models}
                manifest.hash_artifacts(dirs)
                manifest.write(dirs[spec.name])
                pub.commit()
            for mount in pub.kept_mounts:
                result.notes.append(f"{mount} is a mount point inside a replaced model directory; left in place")
        return BuildOutcome(
            spec,
            repo,
            False,
            manifest,
            report,
            export["check"],
            export["exporter"],
            list(export["notes"]) + result.notes,
            exported=source_of(spec).exports,
        )
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
