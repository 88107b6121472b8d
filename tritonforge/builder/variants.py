"""Build, gate and time every precision variant of one model; reuse stages whose inputs did not change."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.builder.converters import CONVERTERS, ConversionJob, VariantSpec, variant_spec
from tritonforge.builder.converters.int8_common import quantized_nodes
from tritonforge.builder.data import Dataset
from tritonforge.builder.gate import GateResult, evaluate
from tritonforge.builder.int8_search import AccuracyControlSearch, rank_sensitive_nodes, search_variants
from tritonforge.builder.onnx_graph import finalize_variant
from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.serving_ort import ServingOrt
from tritonforge.builder.stages import StageCache
from tritonforge.builder.timing import measure, timing_input
from tritonforge.builder.verify import Comparison, Outputs, compare, rebatch_outputs, run_over
from tritonforge.hardware import cpu_info
from tritonforge.hashing import combine, sha256_file
from tritonforge.repository.reader import Repository
from tritonforge.spec import BuildSpec

SEARCH_WINNER_ID = "onnx_int8"
# How much faster than FP32 (geometric mean of the p50 speed-ups) a variant must be to be served instead: the
# spread of repeated timings on a shared machine is about this, and a variant that is no faster only adds error.
PRIMARY_MARGIN = 1.05
FP32 = variant_spec("onnx_fp32")


@dataclass
class VariantOutcome:
    """What became of one variant. status: passed | rejected (gate) | skipped (cannot run here) | error."""

    id: str
    kind: str
    runtime: str
    precision: str
    options: dict[str, Any]
    search: bool = False
    status: str = "pending"
    reason: str = ""
    size_bytes: int = 0
    device: str = ""
    comparison: dict | None = None
    gate: dict | None = None
    timing: dict[str, dict] = field(default_factory=dict)  # batch size -> LatencyStats dict
    speedup: dict[str, float] = field(default_factory=dict)  # batch size -> FP32 p50 / this p50
    memory_mb: float | None = None
    measured_in: str = ""  # the runtime and version its gate figures and timings came from
    notes: list[str] = field(default_factory=list)
    key: str = ""
    file_sha256: str = ""
    published_as: str = ""  # Triton model name, when published
    file: str = ""  # where the artifact is during this build (not persisted)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def throughput(self, batch_size: int) -> float:
        return float(self.timing.get(str(batch_size), {}).get("throughput", 0.0))

    def speed(self) -> float:
        """The geometric mean of its p50 speed-ups against FP32 over the timing batch sizes: the figures the
        report shows (0 when it was not timed)."""
        values = [v for v in self.speedup.values() if v and v > 0]
        return float(np.exp(np.mean(np.log(values)))) if values else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("file")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VariantOutcome:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class VariantsResult:
    outcomes: list[VariantOutcome]
    primary: str
    search_winner: str | None
    timing_reused: bool
    notes: list[str]
    stages: StageCache
    search_path: dict | None = None

    def stage_records(self) -> dict[str, dict]:
        """Stage keys and results for the manifest (call after publishing, so published_as is recorded)."""
        for o in self.outcomes:
            self.stages.store(f"variant:{o.id}", o.key, result=o.to_dict())
        return self.stages.records


@lru_cache(maxsize=1)
def conversion_code() -> str:
    """One hash over the code that makes, gates and searches variants: a rebuild after that code changed never
    replays a result it recorded before."""
    from tritonforge.builder import converters, gate, int8_search, verify

    files = sorted(Path(converters.__file__).parent.glob("*.py")) + [Path(m.__file__) for m in (gate, int8_search, verify)]  # type: ignore[arg-type]
    return combine({p.name: sha256_file(p) for p in files})


def _variant_key(
    spec: BuildSpec, v: VariantSpec, fp32_sha: str, validation: Dataset, calibration: Dataset | None, tools: dict[str, str]
) -> str:
    parts = {
        "code": conversion_code(),
        "fp32": fp32_sha,
        "variant": json.dumps(v.model_dump(mode="json"), sort_keys=True),
        "validation": validation.fingerprint(),
        "gate": json.dumps(spec.gate.model_dump(mode="json"), sort_keys=True),
        "tools": json.dumps(tools, sort_keys=True),
    }
    parts.update(CONVERTERS[v.kind].key_parts(spec, calibration))
    return combine(parts)


class VariantBuilder:
    """Runs the variant stages of one build."""

    def __init__(
        self,
        spec: BuildSpec,
        fp32: Path,
        validation: Dataset,
        reference: Outputs,
        calibration: Dataset | None,
        work: Path,
        stages: StageCache,
        repo: Path,
        tools: dict[str, str],
        reporter,
        ort: ServingOrt | None = None,
    ) -> None:
        self.spec, self.fp32, self.validation, self.reference = spec, fp32, validation, reference
        self.calibration, self.work, self.stages, self.repo = calibration, work, stages, repo
        self.tools, self.rep, self.ort = tools, reporter, ort
        self.fp32_sha = sha256_file(fp32)
        self.notes: list[str] = []
        self.built: dict[str, str] = {
            self.fp32_sha: FP32.variant_id
        }  # sha256 of each variant file built so far -> the first variant id
        self.search_path: dict | None = None  # the accuracy-control search's steps, for the report
        self.inputs = [t.name for t in spec.inputs]
        self.outputs = [t.name for t in spec.outputs]

    # ---- one variant -------------------------------------------------------------------------
    def _reused(self, key: str, vid: str) -> VariantOutcome | None:
        old = self.stages.lookup(f"variant:{vid}", key)
        if old is None:
            return None
        outcome = VariantOutcome.from_dict(old["result"])
        if outcome.published_as:
            path = Repository(self.repo).find_file(outcome.published_as)
            if path is not None and sha256_file(path) == outcome.file_sha256:
                outcome.file = str(path)
        outcome.published_as = ""
        return outcome

    def _convert(self, v: VariantSpec, outcome: VariantOutcome) -> Path:
        converter = CONVERTERS[v.kind]
        out = self.work / f"{v.variant_id}{converter.suffix}"
        job = ConversionJob(self.spec, v, self.fp32, out, self.work, self.calibration, validation=self.validation)
        converter.convert(job)
        if converter.suffix == ".onnx":
            finalize_variant(out, self.spec.export.ir_version)
        outcome.notes.extend(job.notes)
        return out

    def build_one(self, v: VariantSpec, search: bool = False) -> VariantOutcome:
        converter = CONVERTERS[v.kind]
        key = _variant_key(self.spec, v, self.fp32_sha, self.validation, self.calibration, self.tools)
        reused = self._reused(key, v.variant_id)
        if reused is not None:
            reused.search = search
            return reused
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
            path = self.fp32 if v.kind == "onnx_fp32" else self._convert(v, outcome)
            same = self._same_as(v, path, search)
            if same:
                outcome.status, outcome.reason = "skipped", same
                return outcome
            runtime = open_runtime(
                converter.runtime,
                path,
                self.inputs,
                self.outputs,
                timing_input(self.validation, self.spec.max_batch_size),
                self.spec.serving.intra_op_threads,
                ort=self.ort,
            )
            candidate = run_over(runtime.run, self.validation)
        except Exception as e:  # a failed conversion or run rejects this variant, not the build
            outcome.status, outcome.reason = "error", f"{type(e).__name__}: {str(e).strip()[:600]}"
            return outcome
        outcome.file, outcome.file_sha256, outcome.size_bytes = str(path), sha256_file(path), path.stat().st_size
        outcome.device, outcome.memory_mb = runtime.device, round(runtime.memory_mb, 1)
        outcome.measured_in = runtime.runtime_label
        comparison, gate, notes = check_variant(
            self.spec, self.validation, self.reference, runtime.run, converter.batch_dependent, candidate
        )
        outcome.notes.extend(notes)
        outcome.comparison = comparison.to_dict()
        outcome.gate = gate.to_dict()
        outcome.status = "passed" if gate.passed else "rejected"
        outcome.reason = "" if gate.passed else "; ".join(gate.failures)
        return outcome

    def _same_as(self, v: VariantSpec, path: Path, search: bool) -> str:
        """Why a converted file is not a variant of its own ('' if it is): it holds none of its precision, or
        it is byte-identical to a variant built before it (a spec variant is then published once)."""
        if v.kind == "onnx_fp32":
            return ""
        if CONVERTERS[v.kind].changed_nothing(path):
            from tritonforge.builder.converters.changed import op_summary

            return f"nothing to convert ({op_summary(self.fp32)})"
        twin = self.built.setdefault(sha256_file(path), v.variant_id)
        if twin != v.variant_id and not search:
            return f"byte-identical to {twin}: the one file is gated and published once, as {twin}"
        return ""

    # ---- all of them -------------------------------------------------------------------------
    def _sensitivity_cached_search(self) -> list[VariantSpec]:
        s = self.spec.int8_search
        key = combine(
            {
                "code": conversion_code(),
                "fp32": self.fp32_sha,
                "calibration": self.calibration.fingerprint() if self.calibration else "",
                "search": json.dumps(s.model_dump(mode="json"), sort_keys=True),
                "tools": json.dumps(self.tools, sort_keys=True),
            }
        )
        old = self.stages.lookup("int8_search", key)
        if old is not None:
            grid = [variant_spec(**d) for d in old["result"]]
        else:
            assert self.calibration is not None
            grid = search_variants(self.spec, self.fp32, self.calibration, self.work, self.notes)
        self.stages.store("int8_search", key, result=[g.model_dump(mode="json") for g in grid])
        return grid

    def _gated(self, v: VariantSpec, search: bool) -> VariantOutcome:
        with self.rep.stage(f"variant {v.variant_id}: convert and gate"):
            outcome = self.build_one(v, search)
        self.rep.info(_status_line(outcome))
        return outcome

    def _accuracy_control(self) -> tuple[list[VariantOutcome], list[VariantSpec]]:
        """The accuracy-control search; a rebuild with the same inputs replays its recorded points (each reused)."""
        s = self.spec.int8_search
        key = self._search_key()
        old = self.stages.lookup("int8_search", key)
        if old is not None:
            specs = [variant_spec(**d) for d in old["result"]]
            self.search_path = old["path"]
            outcomes = [self._gated(v, True) for v in specs]
        else:
            assert self.calibration is not None

            def rank(excluded: list[str]) -> list[str]:
                with self.rep.stage(f"INT8 search: sensitivity with {len(excluded)} node(s) in float"):
                    return rank_sensitive_nodes(
                        self.fp32, self.calibration, self.inputs, s.op_types, self.work, self.notes, excluded=excluded
                    )

            def quantized(outcome: VariantOutcome) -> set[str] | None:
                if outcome.status not in ("passed", "rejected"):
                    return None
                path = Path(outcome.file) if outcome.file else self._convert(_spec_for(outcome, []), outcome)
                return quantized_nodes(path) if path.is_file() else None

            search = AccuracyControlSearch(self.spec, lambda v: self._gated(v, True), rank, quantized)
            outcomes, path = search.run()
            specs = [_spec_for(o, []) for o in outcomes]
            self.search_path = path.to_dict()
        self.stages.store("int8_search", key, result=[v.model_dump(mode="json") for v in specs], path=self.search_path)
        return outcomes, specs

    def _search_key(self) -> str:
        s = self.spec.int8_search
        return combine(
            {
                "code": conversion_code(),
                "fp32": self.fp32_sha,
                "calibration": self.calibration.fingerprint() if self.calibration else "",
                "validation": self.validation.fingerprint(),
                "gate": json.dumps(self.spec.gate.model_dump(mode="json"), sort_keys=True),
                "search": json.dumps(s.model_dump(mode="json"), sort_keys=True),
                "tools": json.dumps(self.tools, sort_keys=True),
            }
        )

    def run(self) -> VariantsResult:
        specs = [(FP32, False)] + [(v, False) for v in self.spec.variants]
        grid = self.spec.int8_search.enabled and self.spec.int8_search.strategy == "grid"
        if grid:
            with self.rep.stage("INT8 search: sensitivity analysis and grid"):
                specs += [(v, True) for v in self._sensitivity_cached_search()]
        outcomes = [self._gated(v, search) for v, search in specs]
        if self.spec.int8_search.enabled and not grid:
            found, found_specs = self._accuracy_control()
            outcomes += found
            specs += [(v, True) for v in found_specs]
        all_specs = [v for v, _ in specs]
        timing_reused = self._time(outcomes, all_specs)
        self.notes.extend(subnormal_speedup_notes(outcomes))
        winner = self._search_winner(outcomes)
        primary = self._primary(outcomes, winner)
        for o in outcomes:  # results reused without their file (not published last time) need it now
            if o.passed and (not o.search or o.id == winner) and not o.file:
                o.file = str(self.fp32 if o.kind == "onnx_fp32" else self._convert(_spec_for(o, all_specs), o))
        return VariantsResult(outcomes, primary, winner, timing_reused, self.notes, self.stages, self.search_path)

    def _time(self, outcomes: list[VariantOutcome], specs: list[VariantSpec]) -> bool:
        """Time side by side every variant that passed and every spec variant the gate rejected (so the report
        shows what its speed would have been); reuse the last timing if the same files were timed."""
        if not self.spec.timing.enabled:
            return False
        timed = [o for o in outcomes if o.passed or (o.status == "rejected" and not o.search)]
        key = combine(
            {
                "files": json.dumps(sorted((o.id, o.file_sha256) for o in timed)),
                "settings": json.dumps(self.spec.timing.model_dump(mode="json"), sort_keys=True),
                "batches": str(self.spec.timing_batch_sizes),
                "cpu": json.dumps(cpu_info(), sort_keys=True),
                "threads": str(self.spec.serving.intra_op_threads),
            }
        )
        old = self.stages.lookup("timing", key)
        if old is not None:
            for o in timed:
                o.timing = old["result"].get(o.id, {})
            self._speedups(timed)
            self.stages.store("timing", key, result=old["result"])
            return True
        runners = {}
        with self.rep.stage(f"time {len(timed)} variants side by side at batch {self.spec.timing_batch_sizes}"):
            for o in timed:
                if not o.file:  # reused result whose file is not in the repository: convert again
                    o.file = str(self.fp32 if o.kind == "onnx_fp32" else self._convert(_spec_for(o, specs), o))
                runners[o.id] = open_runtime(
                    o.runtime, Path(o.file), self.inputs, self.outputs, threads=self.spec.serving.intra_op_threads, ort=self.ort
                ).timer
            inputs = {b: timing_input(self.validation, b) for b in self.spec.timing_batch_sizes}
            stats = measure(runners, inputs, self.spec.timing)
        for o in timed:
            o.timing = {str(b): s.to_dict() for b, s in stats[o.id].items()}
        self._speedups(timed)
        self.stages.store("timing", key, result={o.id: o.timing for o in timed})
        return False

    @staticmethod
    def _speedups(timed: list[VariantOutcome]) -> None:
        fp32 = next((o for o in timed if o.kind == "onnx_fp32"), None)
        for o in timed:
            if fp32 is None:
                continue
            o.speedup = {b: round(fp32.timing[b]["p50_ms"] / s["p50_ms"], 3) for b, s in o.timing.items() if b in fp32.timing}

    def _search_winner(self, outcomes: list[VariantOutcome]) -> str | None:
        passing = [o for o in outcomes if o.search and o.passed]
        if not passing:
            return None
        return max(passing, key=VariantOutcome.speed).id

    def _primary(self, outcomes: list[VariantOutcome], winner: str | None) -> str:
        primary, why = choose_primary(outcomes, winner, self.spec.timing.enabled)
        self.notes.append(why)
        return primary


def check_variant(
    spec: BuildSpec, validation: Dataset, reference: Outputs, run, batch_dependent: bool, candidate: Outputs | None = None
) -> tuple[Comparison, GateResult, list[str]]:
    """Compare a variant with the FP32 reference on the validation data and apply the gate. A batch-dependent
    variant must pass one sample at a time too (served batches are not the validation batches); the worse of
    the two comparisons is the one reported."""
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
    return comparison, gate, notes


def _worst_cosine(comparison: Comparison) -> float:
    return min(m.min_cosine for m in comparison.outputs.values())


def _spec_for(outcome: VariantOutcome, specs: list[VariantSpec]) -> VariantSpec:
    for v in specs:
        if v.variant_id == outcome.id:
            return v
    return variant_spec(outcome.kind, **{k: v for k, v in outcome.options.items() if k != "kind"})


def _status_line(o: VariantOutcome) -> str:
    if o.status == "passed":
        return f"{o.id}: passed the gate"
    return f"{o.id}: {o.status}: {o.reason}"


def choose_primary(outcomes: list[VariantOutcome], winner: str | None, timed: bool) -> tuple[str, str]:
    """(variant id, why): the variant the model is served as. The fastest passing variant by the report's own
    p50 speed-ups against FP32 (their geometric mean over the timing batch sizes), and only if that is at least
    PRIMARY_MARGIN: a variant that adds error must buy speed; else FP32."""
    if not timed:
        return "onnx_fp32", "primary: onnx_fp32 (timing is off, so no variant has shown it is faster)"
    publishable = [o for o in outcomes if o.passed and (not o.search or o.id == winner)]
    best = max((o for o in publishable if o.kind != "onnx_fp32"), key=VariantOutcome.speed, default=None)

    def shown(o: VariantOutcome) -> str:
        return (
            "/".join(f"{o.speedup[b]:.2f}x" for b in sorted(o.speedup, key=int))
            + f" at batch {'/'.join(sorted(o.speedup, key=int))}"
        )

    if best is not None and best.speed() >= PRIMARY_MARGIN:
        return best.id, f"primary: {best.id}, the fastest passing variant: p50 {shown(best)} of FP32's"
    why = f"the fastest passing variant, {best.id}, is {shown(best)} of FP32's p50" if best else "no other variant passed"
    return "onnx_fp32", (f"primary: onnx_fp32: {why}; a variant must be {PRIMARY_MARGIN:.2f}x faster to be served in its place")


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
