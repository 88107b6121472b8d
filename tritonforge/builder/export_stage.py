"""The export stage: the source model as a verified FP32 ONNX file (reused when its inputs did not change)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from tritonforge.builder.inputs import BuildInputs
from tritonforge.builder.onnx_graph import subnormal_initializers
from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.serving_graph import Names
from tritonforge.builder.serving_ort import ServingOrt
from tritonforge.builder.sources import export_source, load_source
from tritonforge.builder.stages import StageCache
from tritonforge.builder.variants import (
    Reporter,
)
from tritonforge.builder.verify import compare, run_over
from tritonforge.errors import VerificationError
from tritonforge.hashing import combine, sha256_file
from tritonforge.repository.reader import Repository
from tritonforge.spec import BuildSpec


def export_key(inp: BuildInputs) -> str:
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


def export_stage(
    inp: BuildInputs, work: Path, stages: StageCache, repo: Path, rep: Reporter, ort: ServingOrt | None
) -> tuple[Path, dict]:
    """The verified FP32 ONNX file: reused from the repository when its inputs did not change."""
    spec, validation = inp.spec, inp.validation
    key = export_key(inp)
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
        candidate = run_over(onnx_runner(spec, out, ort), validation)
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
            "FP32 slowly, and any variant that drops them (FP16, INT8) would look faster for that reason: the "
            "onnx_fp32_ftz variant (FP32 with them set to zero) is timed beside FP32 and speed-ups are against the "
            "faster of the two",
        ]
    result = {
        "exporter": exporter,
        "notes": notes,
        "check": check.to_dict(),
        "samples": len(validation),
        "subnormal_weights": subnormals,
    }
    return out, stages.store("export", key, sha256=sha256_file(out), result=result)


def onnx_runner(spec: BuildSpec, path: Path, ort: ServingOrt | None):
    """Run an ONNX file where its figures must come from: the serving runtime, else this process's."""
    return open_runtime(
        "onnxruntime",
        path,
        [t.name for t in spec.inputs],
        [t.name for t in spec.outputs],
        threads=spec.serving.intra_op_threads,
        ort=ort,
    ).run
