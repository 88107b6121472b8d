"""`tritonforge build`: spec -> source model -> verified ONNX -> precision variants gated and timed -> Triton
repository, written atomically; nothing at all when nothing changed, and unchanged stages reused."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from tritonforge import __version__
from tritonforge.builder import probe_sample
from tritonforge.builder.converters import CONVERTERS
from tritonforge.builder.data import Dataset, load_dataset
from tritonforge.builder.onnx_graph import subnormal_initializers
from tritonforge.builder.report import assemble, report_files
from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.serving_check import Probe, ServingCheck
from tritonforge.builder.serving_graph import Names, ServingPlan, plan_models, preprocess_settings, serving_sources
from tritonforge.builder.serving_ort import ServingOrt
from tritonforge.builder.sources import export_source, load_source, source_files, source_tools
from tritonforge.builder.stages import StageCache
from tritonforge.builder.variants import (
    BuildContext,
    PublishOrder,
    Reporter,
    VariantBuilder,
    VariantOutcome,
    conversion_code,
    publish_order,
)
from tritonforge.builder.verify import compare, run_over
from tritonforge.errors import DataError, RepositoryError, VerificationError
from tritonforge.hardware import gpu_info
from tritonforge.hashing import combine, sha256_bytes, sha256_file
from tritonforge.repository.build_report import BuildReport, RepositoryCheckSection, ServingSection
from tritonforge.repository.manifest import Manifest, read_manifest, tool_versions
from tritonforge.repository.publish import Publication, RepositoryLock, check_root
from tritonforge.repository.reader import Repository
from tritonforge.spec import BuildSpec, load_spec

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


@dataclass
class _Inputs:
    spec: BuildSpec
    validation: Dataset
    calibration: Dataset | None
    hashes: dict[str, str]
    tools: dict[str, str]
    fingerprint: str
    tokenizer_file: Path | None


def _read_inputs(spec_path: str | Path, ort: ServingOrt | None) -> _Inputs:
    spec = load_spec(spec_path)
    validation = load_dataset(spec, spec.validation.data, "validation.data")
    validation = validation.rebatch(min(spec.validation.batch_size, spec.max_batch_size))
    calibration = None
    if spec.calibration is not None:
        calibration = load_dataset(spec, spec.calibration.data, "calibration.data").rebatch(spec.max_batch_size)
        shared = len(calibration.sample_hashes() & validation.sample_hashes())
        if shared:
            raise DataError(
                f"calibration.data shares {shared} sample(s) with validation.data; calibrate on other "
                "samples (the gate needs held-out data)"
            )
    hashes = {"spec": spec.content_hash(), "validation.data": validation.fingerprint()}
    if calibration is not None:
        hashes["calibration.data"] = calibration.fingerprint()
    for name, path in source_files(spec).items():
        hashes[name] = sha256_file(path)
    tokenizer_file = None
    if spec.preprocess is not None:
        tokenizer_file = spec.resolve_ref(spec.preprocess.tokenizer_file, "preprocess.tokenizer_file")
        hashes["preprocess.tokenizer_file"] = sha256_file(tokenizer_file)
    for path in serving_sources():
        hashes[f"code/{path.parent.name}/{path.name}"] = sha256_file(path)
    hashes["code/variants"] = conversion_code()
    tools = tool_versions() | source_tools(spec)
    if ort is not None:  # the runtime every ONNX figure comes from
        tools["serving:onnxruntime"] = ort.versions_now()["onnxruntime"]
    parts = {"tritonforge": __version__, **hashes, **{f"tool:{k}": v for k, v in tools.items()}}
    if any(CONVERTERS[v.kind].needs_gpu for v in spec.variants):
        parts["gpu"] = json.dumps(gpu_info().identity(), sort_keys=True)  # plans are tied to GPU and TensorRT
    return _Inputs(spec, validation, calibration, hashes, tools, combine(parts), tokenizer_file)


def _export_key(inp: _Inputs) -> str:
    spec = inp.spec
    section = {k: spec.model_dump(mode="json")[k] for k in ("source", "inputs", "outputs", "max_batch_size", "export")}
    return combine(
        {
            "spec": json.dumps(section, sort_keys=True),
            "validation": inp.validation.fingerprint(),
            "tolerance": json.dumps(spec.validation.tolerance.model_dump(), sort_keys=True),
            "tools": json.dumps(inp.tools, sort_keys=True),
            **{k: v for k, v in inp.hashes.items() if k.startswith("source")},
        }
    )


def _export_stage(
    inp: _Inputs, work: Path, stages: StageCache, repo: Path, rep: Reporter, ort: ServingOrt | None
) -> tuple[Path, dict]:
    """The verified FP32 ONNX file: reused from the repository when its inputs did not change."""
    spec, validation = inp.spec, inp.validation
    key = _export_key(inp)
    published = Repository(repo).find_file(Names(spec.name).variant("onnx_fp32"))
    prev = stages.lookup("export", key, lambda r: published is not None and sha256_file(published) == r.get("sha256"))
    if prev is not None and published is not None:  # lookup checked the published file's hash
        rep.info("export: inputs unchanged, FP32 ONNX reused")
        return published, stages.store("export", key, sha256=prev["sha256"], result=prev["result"])
    out = work / "model_fp32.onnx"
    with rep.stage("load source model"):
        source = load_source(spec)
    with rep.stage("export to ONNX"):
        exported = export_source(source, spec, validation, out)
        exporter, notes = exported.exporter, exported.notes
    with rep.stage("verify ONNX against the source model"):
        reference = run_over(source.run, validation)
        candidate = run_over(_onnx_runner(spec, out, ort), validation)
        tol = spec.validation.tolerance
        check = compare(spec, validation, reference, candidate, tol.atol, tol.rtol)
    if not check.within_tolerance:
        worst = max(check.outputs.values(), key=lambda m: m.violation)
        raise VerificationError(
            f"exported ONNX does not reproduce the source model on {len(validation)} validation samples: "
            f"output '{worst.name}' max abs error {worst.max_abs:.3g}, max rel error {worst.max_rel:.3g} "
            f"exceeds atol={tol.atol:g}, rtol={tol.rtol:g} (worst element at {worst.violation:.3g}x the tolerance)"
        )
    subnormals = subnormal_initializers(onnx.load(str(out), load_external_data=False))
    if subnormals:
        total, most = sum(subnormals.values()), max(subnormals, key=lambda n: subnormals[n])
        notes = [
            *notes,
            f"the FP32 graph holds {total} subnormal weight(s) (|w| < 1.18e-38) in {len(subnormals)} "
            f"tensor(s), most in '{most}' ({subnormals[most]}): a CPU that handles them in microcode runs "
            "FP32 slowly, and any variant that drops them (FP16, INT8) looks faster for that reason; the "
            "onnx_fp32_ftz variant (FP32 with them set to zero) shows how much",
        ]
    result = {
        "exporter": exporter,
        "notes": notes,
        "check": check.to_dict(),
        "samples": len(validation),
        "subnormal_weights": subnormals,
    }
    return out, stages.store("export", key, sha256=sha256_file(out), result=result)


def _serving_section(spec: BuildSpec, order: PublishOrder, plan: ServingPlan, probe: probe_sample.ProbeSample) -> ServingSection:
    return ServingSection(
        rungs=[o.published_as for o in order.published],
        in_process_runner=plan.cpu_variant.id,
        cache=spec.serving.cache.kind,
        cache_version=plan.cache_version,
        probe=probe.to_dict(),
    )


def _serving_plan(inp: _Inputs, published: list[VariantOutcome], files: dict, notes: list[str]) -> ServingPlan:
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
    return ServingPlan(published, cpu, fp32, version, inp.tokenizer_file, files)


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
            inp = _read_inputs(spec_path, check.ort)
        # From reading the repository's state to publishing, builds of one repository take turns.
        with RepositoryLock(repo, on_wait=rep.info) as lock:
            return _build_locked(inp, repo, force, rep, check, lock)


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
    inp: _Inputs, repo: Path, force: bool, rep: Reporter, check: ServingCheck, lock: RepositoryLock
) -> BuildOutcome:
    spec = inp.spec
    old = read_manifest(repo, spec.name)
    if old is not None and not force and old.fingerprint == inp.fingerprint and old.intact(repo):
        rep.info(f"{spec.name}: up to date (fingerprint {inp.fingerprint[:12]}), nothing to do")
        return BuildOutcome(spec, repo, True, old)
    stages = StageCache({} if force or old is None else old.stages)

    work = Path(tempfile.mkdtemp(prefix="tritonforge-build-"))
    try:
        fp32, export = _export_stage(inp, work, stages, repo, rep, check.ort)
        export = export["result"]
        with rep.stage("FP32 reference outputs on the validation data"):
            reference = run_over(_onnx_runner(spec, fp32, check.ort), inp.validation)
        ctx = BuildContext(spec, fp32, inp.validation, reference, inp.calibration, work, stages, repo, inp.tools, rep, check.ort)
        result = VariantBuilder(ctx).run()
        order = publish_order(result.outcomes, result.primary, result.search_winner, Names(spec.name).variant)
        published = order.published
        plan = _serving_plan(inp, published, {}, result.notes)
        version = (old.version + 1) if old else 1
        models = plan_models(spec, plan, version)  # checked without the report files, published with them
        owned = {m.name for m in models}
        _refuse_foreign_overwrite(repo, owned, old)
        texts = _sample_texts(spec)
        with rep.stage(
            "load the staged models in tritonserver and ask the public model" if check.enabled else "check the staged configs"
        ):
            started = time.perf_counter()
            checked = check.check(spec, models, version, Path(plan.cpu_variant.file), _probe(inp, texts))
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
        models = plan_models(spec, replace(plan, report_files=files), version)
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
                dirs = {m.name: m.write(pub.stage(m.name), manifest.version) for m in models}
                manifest.hash_artifacts(dirs)
                manifest.write(dirs[spec.name])
                pub.commit()
            for mount in pub.kept_mounts:
                result.notes.append(f"{mount} is a mount point inside a replaced model directory; left in place")
        return BuildOutcome(
            spec, repo, False, manifest, report, export["check"], export["exporter"], list(export["notes"]) + result.notes
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _onnx_runner(spec: BuildSpec, path: Path, ort: ServingOrt | None):
    """Run an ONNX file where its figures must come from: the serving runtime, else this process's."""
    return open_runtime(
        "onnxruntime",
        path,
        [t.name for t in spec.inputs],
        [t.name for t in spec.outputs],
        threads=spec.serving.intra_op_threads,
        ort=ort,
    ).run


PROBE_SAMPLES = 8  # held-out samples the public model answers in the build's check (one alone, then a batch)


def _probe(inp: _Inputs, texts: list[str] | None) -> Probe:
    """Held-out requests for the build's check: the first sample alone, then a batch of the next ones."""
    spec = inp.spec
    if spec.preprocess is not None:
        from tritonforge.serving.tokenize import TextEncoder

        chosen = texts or [probe_sample.FALLBACK_TEXT]
        groups = [g for g in (chosen[:1], chosen[1 : 1 + PROBE_SAMPLES]) if g]
        settings = preprocess_settings(spec)
        assert settings is not None and inp.tokenizer_file is not None
        encoder = TextEncoder(inp.tokenizer_file, settings, [t.name for t in spec.inputs])
        name = spec.preprocess.text_input
        return Probe([{name: np.array([[t] for t in g], dtype=object)} for g in groups], [encoder.encode([g])[0] for g in groups])
    first = inp.validation.batches[0]
    n = len(next(iter(first.values())))
    cuts = [c for c in ((0, 1), (1, min(n, 1 + PROBE_SAMPLES))) if c[1] > c[0]]
    batches = [{k: v[a:b] for k, v in first.items()} for a, b in cuts]
    return Probe(batches, batches)


def _sample_texts(spec: BuildSpec) -> list[str] | None:
    """Held-out texts for a tokenizer-fronted model (from preprocess.sample_texts), at most 2,000."""
    if spec.preprocess is None or not spec.preprocess.sample_texts:
        return None
    from tritonforge.spec.refs import import_callable

    fn = import_callable(spec.preprocess.sample_texts, spec.base_dir, "preprocess.sample_texts")
    try:
        texts = [str(t) for t in fn()][:2000]
    except Exception as e:
        raise DataError(f"preprocess.sample_texts ({spec.preprocess.sample_texts}) raised {type(e).__name__}: {e}") from None
    if not texts:
        raise DataError(f"preprocess.sample_texts ({spec.preprocess.sample_texts}) returned no texts")
    return texts


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
