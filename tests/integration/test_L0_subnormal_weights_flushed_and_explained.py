"""Subnormal weights: detected per tensor at export, flushed by the onnx_fp32_ftz variant (built by default when
there are any), every speed-up against the faster of FP32 and its flushed copy. The model is built to hold them: a
quarter of its first weight matrix is 1e-40 (below float32's 1.18e-38). Whether the flushed copy is faster depends on
the CPU (tests/unit/builder/test_primary.py holds the penalty by construction); what holds on any CPU is checked here."""

from __future__ import annotations

import numpy as np
import onnx
from helpers import mlp_spec

from tritonforge.builder.onnx_graph import subnormal_initializers
from tritonforge.builder.pipeline import build
from tritonforge.repository.reader import Repository

SUBNORMAL = np.float32(1e-40)


def _spec(tmp_path, **extra):
    w1 = np.random.default_rng(0).normal(size=(16, 32)).astype(np.float32)
    w1.flat[::4] = SUBNORMAL  # 128 of 512
    return mlp_spec(tmp_path, "sub", w1, gate={"min_cosine": 0.999}, **extra)


def _p50(variant, batch):
    return variant["timing"][batch]["p50_ms"]


def test_subnormal_weights_are_counted_flushed_by_default_and_speedups_are_against_the_faster_fp32(tmp_path):
    report = build(_spec(tmp_path), tmp_path / "repo").report.to_dict()
    assert report["export"]["subnormal_weights"] == {"w1": 128}
    assert any("holds 128 subnormal weight(s)" in n and "onnx_fp32_ftz" in n for n in report["export"]["notes"])
    variants = {v["id"]: v for v in report["variants"]}
    ftz, fp32 = variants["onnx_fp32_ftz"], variants["onnx_fp32"]  # not in the spec: built because of the subnormals
    assert ftz["status"] == "passed"  # 1e-40 * x changes nothing a float32 output can show
    assert "128 subnormal weight(s) in 1 tensor(s) set to zero" in ftz["notes"]
    assert subnormal_initializers(onnx.load(Repository(tmp_path / "repo").file(ftz["published_as"]))) == {}
    assert any(n.startswith("onnx_fp32_ftz built beside FP32: its graph holds 128 subnormal") for n in report["notes"])
    assert any(n.startswith("batch 8: onnx_fp32_ftz (FP32, subnormal weights set to zero) runs") for n in report["notes"])
    # The reference is whichever of the two measured faster here; every speed-up is its p50 over the variant's.
    against = report["timing"]["speedups_against"]
    ratio = np.sqrt(np.prod([_p50(fp32, b) / _p50(ftz, b) for b in ("1", "8")]))
    assert against == ("onnx_fp32_ftz" if ratio > 1 else "onnx_fp32")
    for v in variants.values():
        for b in ("1", "8"):
            assert v["speedup"][b] == round(_p50(variants[against], b) / _p50(v, b), 3)
    assert report["primary"] in variants and variants[report["primary"]]["status"] == "passed"


def test_the_flushed_copy_can_be_turned_off(tmp_path):
    report = build(_spec(tmp_path, timing={"flushed_fp32": False}), tmp_path / "repo").report.to_dict()
    assert report["export"]["subnormal_weights"] == {"w1": 128}
    assert "onnx_fp32_ftz" not in {v["id"] for v in report["variants"]}
    assert report["timing"]["speedups_against"] == "onnx_fp32"
