"""Precision variants: built, gated against FP32 on held-out data, timed side by side, reported, reproducible."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers import DIGITS, ROOT, digits_spec_copy, outlier_digits_spec

from tritonforge.builder.pipeline import build
from tritonforge.errors import DataError, SpecError
from tritonforge.repository.config import read_config
from tritonforge.repository.reader import Repository
from tritonforge.spec import load_spec


class Recorder:
    """A reporter that remembers which stages ran."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.messages: list[str] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        self.stages.append(name)
        yield

    def info(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture(scope="module")
def full_digits(tmp_path_factory, digits_spec):
    """The digits example with all its variants, built once for this module."""
    tmp = tmp_path_factory.mktemp("variants")
    # The MLP behind an input outlier: its INT8 variants fail the example's gate on any CPU, by construction.
    spec = outlier_digits_spec(tmp / "spec")
    repo = tmp / "model_repository"
    outcome = build(spec, repo)
    return spec, repo, outcome.report.to_dict()  # as build_report.json holds it


def _variant(report: dict, vid: str) -> dict:
    return next(v for v in report["variants"] if v["id"] == vid)


def test_fp16_and_int8_variants_are_built_gated_and_timed(full_digits):
    _, repo, report = full_digits
    for vid in ("onnx_fp16", "onnx_int8_dynamic", "onnx_int8_qdq"):
        v = _variant(report, vid)
        assert v["status"] in ("passed", "rejected"), v
        assert v["size_bytes"] > 0
        acc = v["comparison"]["accuracy"]
        assert 0.9 < acc["reference"] <= 1 and 0 <= acc["candidate"] <= 1  # gated on labelled held-out data
        assert v["comparison"]["outputs"]["logits"]["top1_agreement"] is not None
        checks = {c["name"] for c in v["gate"]["checks"]}
        assert {"top-1 agreement", "accuracy drop"} <= checks
    for v in report["variants"]:
        if v["status"] in ("passed", "rejected"):  # rejected ones are timed too: the report shows their speed
            assert set(v["timing"]) == {"1", "64"}
            assert v["speedup"]["64"] > 0 and v["timing"]["64"]["p50_ms"] > 0
        if v["status"] == "passed":
            assert (repo / v["published_as"] / "config.pbtxt").is_file()
        else:
            assert not v["published_as"]
        if v["status"] in ("skipped", "error"):
            assert not v["timing"]
    assert _variant(report, "onnx_fp16")["comparison"]["accuracy"]["candidate"] > 0.9
    reference = _variant(report, report["timing"]["speedups_against"])  # FP32 or its flushed copy (digits has subnormals)
    assert reference["speedup"] == {"1": 1.0, "64": 1.0} and reference["precision"] == "fp32"
    assert report["primary"] in {v["id"] for v in report["variants"] if v["status"] == "passed"}


def test_rejected_variant_is_not_published_and_says_by_how_much(full_digits):
    _, repo, report = full_digits
    rejected = [v for v in report["variants"] if v["status"] == "rejected"]
    assert {"onnx_int8_dynamic", "onnx_int8_qdq"} <= {v["id"] for v in rejected}
    for vid in ("onnx_int8_dynamic", "onnx_int8_qdq"):  # the outlier leaves INT8 no resolution for the pixels
        assert _variant(report, vid)["comparison"]["outputs"]["logits"]["top1_agreement"] < 0.5
    for v in rejected:
        assert "FAILS by" in v["reason"]
        assert not (repo / f"digits_{v['id']}").exists()
    md = (repo / "digits" / "build_report.md").read_text()
    assert "## Not published" in md and rejected[0]["id"] in md


def test_tensorrt_variants_skip_with_reason_without_gpu(full_digits):
    """Without a CUDA device, or with one but no TensorRT (the lent H100), the variants say why and are not
    published; with both they are built and gated."""
    from tritonforge.builder.converters.onnx2trt import tensorrt_unavailable
    from tritonforge.hardware import cuda_device_reason

    _, repo, report = full_digits
    reason = tensorrt_unavailable()
    if cuda_device_reason():
        assert reason.startswith("no CUDA device")
    for vid in ("trt_fp16", "trt_int8"):
        v = _variant(report, vid)
        if reason:
            assert v["status"] == "skipped" and v["reason"] == reason
            assert not (repo / f"digits_{vid}").exists()
        else:
            assert v["status"] in ("passed", "rejected")


def test_report_files_and_recheck_reproduce_every_decision(full_digits, tmp_path):
    """Each reproduce command works as printed, from any directory."""
    _, repo, report = full_digits
    base = repo / "digits"
    for name in (
        "build_report.json",
        "build_report.md",
        "validation_inputs.npz",
        "reference_outputs.npz",
        "calibration_inputs.npz",
    ):
        assert (base / name).is_file(), name
    for v in report["variants"]:
        cmd = shlex.split(report["reproduce"][v["id"]])
        assert cmd[:3] == ["python", "-m", "tritonforge.builder.recheck"] and cmd[3] == str(repo.absolute())
        proc = subprocess.run([sys.executable, *cmd[1:]], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "decision reproduced" in proc.stdout
    gone = subprocess.run(
        [sys.executable, "-m", "tritonforge.builder.recheck", "my_repo", "digits", "onnx_fp32"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 2 and "no build report for model 'digits' in my_repo" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_recheck_runs_a_recorded_error_again(full_digits, tmp_path):
    """An error decision is re-run, not assumed: a conversion that now succeeds does not reproduce it (on the
    lent H100 machine, where onnx_int8_dynamic failed shape inference, the same recheck reproduced the error)."""
    import shutil

    from tritonforge.builder.recheck import recheck

    _, repo, _ = full_digits
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    path = copy / "digits" / "build_report.json"
    data = json.loads(path.read_text())
    entry = next(v for v in data["variants"] if v["id"] == "onnx_int8_qdq")
    entry.update(status="error", reason="RuntimeError: conversion failed here once")
    path.write_text(json.dumps(data))
    reproduced, text = recheck(copy, "digits", "onnx_int8_qdq")
    assert not reproduced and "rejected; recorded: error" in text


def test_report_command_prints_the_report(full_digits):
    _, repo, _ = full_digits
    proc = subprocess.run(
        [sys.executable, "-m", "tritonforge", "report", "digits", "--repo", str(repo)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "onnx_int8_dynamic" in proc.stdout and "primary:" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "tritonforge", "report", "digits", "--repo", str(repo), "--markdown"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.stdout.startswith("# Build report: digits") and "Primary variant" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "tritonforge", "report", "nope", "--repo", str(repo)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no build report for model 'nope'" in proc.stderr


def test_incremental_rebuild_reuses_unchanged_stages(full_digits, tmp_path):
    spec, repo, report = full_digits
    data = yaml.safe_load(spec.read_text())
    data["serving"]["instance_count"] = 2  # serving only: export, variants and timing are unchanged
    changed = spec.parent / "spec_serving.yaml"
    changed.write_text(yaml.safe_dump(data))
    rec = Recorder()
    outcome = build(changed, repo, reporter=rec)
    assert not outcome.noop
    assert "export to ONNX" not in rec.stages and "load source model" not in rec.stages
    assert any("FP32 ONNX reused" in m for m in rec.messages)
    assert not any(s.startswith("time ") for s in rec.stages)
    assert outcome.report.timing.reused_from_previous_build
    for old, new in zip(report["variants"], outcome.report.variants, strict=True):
        assert old["status"] == new.status and old["timing"] == new.timing
    assert read_config(repo / "digits_ort" / "config.pbtxt").instance_group[0].count == 2


def test_gate_thresholds_come_from_the_spec(tmp_path, digits_spec):
    spec = digits_spec_copy(
        tmp_path / "spec",
        variants=[{"kind": "onnx_fp16"}],
        gate={"min_top1_agreement": 1.0, "max_accuracy_drop": 0.0, "max_abs": 1e-9},
    )
    report = build(spec, tmp_path / "repo").report
    fp16 = report.variant("onnx_fp16")
    assert fp16 is not None and fp16.status == "rejected" and "max abs" in fp16.reason
    assert not (tmp_path / "repo" / "digits_onnx_fp16").exists()


def test_missing_or_overlapping_calibration_data(tmp_path, digits_spec):
    spec = digits_spec_copy(tmp_path / "a", variants=[{"kind": "onnx_int8_qdq"}])
    with pytest.raises(SpecError, match="need a 'calibration' section"):
        load_spec(spec)
    spec = digits_spec_copy(
        tmp_path / "b", variants=[{"kind": "onnx_int8_qdq"}], calibration={"data": {"npz": str(tmp_path / "absent.npz")}}
    )
    with pytest.raises(SpecError, match="field 'calibration.data.npz': file not found"):
        load_spec(spec)
    val = np.load(DIGITS / "artifacts" / "validation.npz")
    np.savez(tmp_path / "leaky.npz", image=val["image"][:20])
    spec = digits_spec_copy(
        tmp_path / "c", variants=[{"kind": "onnx_int8_qdq"}], calibration={"data": {"npz": str(tmp_path / "leaky.npz")}}
    )
    with pytest.raises(DataError, match="shares 20 sample"):
        build(spec, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_broken_variant_conversion_is_reported_not_fatal(tmp_path, digits_spec):
    spec = digits_spec_copy(
        tmp_path / "spec", variants=[{"kind": "onnx_int8_dynamic", "op_types": ["NoSuchOp"]}, {"kind": "onnx_fp16", "id": "half"}]
    )
    report = build(spec, tmp_path / "repo").report.to_dict()
    assert _variant(report, "half")["status"] == "passed"
    # digits' FP32 graph holds subnormal weights, so its flushed copy is built beside FP32 too
    assert {v["id"] for v in report["variants"]} == {"onnx_fp32", "onnx_fp32_ftz", "onnx_int8_dynamic", "half"}
    assert Repository(tmp_path / "repo").file("digits_half").is_file()


@pytest.mark.gpu
def test_tensorrt_plans_build_and_pass_on_gpu(tmp_path, digits_spec):
    """Real TensorRT FP16/INT8 plans for the digits model; skipped with the reason where there is no GPU."""
    from helpers import digits_spec_copy

    from tritonforge.builder.converters.onnx2trt import tensorrt_unavailable
    from tritonforge.builder.pipeline import build

    reason = tensorrt_unavailable()
    if reason:
        pytest.skip(f"skipped: {reason}")
    spec = digits_spec_copy(
        tmp_path / "spec", full=True, variants=[{"kind": "trt_fp16"}, {"kind": "trt_int8", "calibration_method": "minmax"}]
    )
    report = build(spec, tmp_path / "repo").report.to_dict()
    for vid in ("trt_fp16", "trt_int8"):
        v = next(x for x in report["variants"] if x["id"] == vid)
        assert v["status"] in ("passed", "rejected"), v
        assert v["device"].startswith("CUDA")
    manifest_gpu = report["hardware"]["gpu"]
    assert manifest_gpu["name"] and manifest_gpu["compute_capability"]
