"""Subnormal weights: detected per tensor at export, flushed by the onnx_fp32_ftz variant, explained in the report.
The model is built to hold them: a quarter of its first weight matrix is 1e-40 (below float32's 1.18e-38)."""

from __future__ import annotations

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from tritonforge.builder.onnx_graph import subnormal_initializers
from tritonforge.builder.pipeline import build
from tritonforge.builder.variants import VariantOutcome, subnormal_speedup_notes
from tritonforge.repository.reader import Repository

SUBNORMAL = np.float32(1e-40)


def _model(path):
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 32)).astype(np.float32)
    w1.flat[::4] = SUBNORMAL  # 128 of 512
    w2 = rng.normal(size=(32, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
        ],
        "subnormal",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _spec(tmp_path):
    _model(tmp_path / "m.onnx")
    np.savez(tmp_path / "val.npz", x=np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32))
    spec = {
        "name": "sub",
        "source": {"kind": "onnx", "path": "m.onnx"},
        "max_batch_size": 8,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [16]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}],
        "validation": {"data": {"npz": "val.npz"}},
        "variants": [{"kind": "onnx_fp32_ftz"}],
        "gate": {"min_cosine": 0.999},
        "timing": {"batch_sizes": [8], "max_windows": 3, "window_s": 0.05},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "spec.yaml"


def test_subnormal_weights_are_counted_flushed_and_explained(tmp_path):
    report = build(_spec(tmp_path), tmp_path / "repo").report.to_dict()
    assert report["export"]["subnormal_weights"] == {"w1": 128}
    assert any("holds 128 subnormal weight(s)" in n and "onnx_fp32_ftz" in n for n in report["export"]["notes"])
    ftz = next(v for v in report["variants"] if v["kind"] == "onnx_fp32_ftz")
    assert ftz["status"] == "passed"  # 1e-40 * x changes nothing a float32 output can show
    assert "128 subnormal weight(s) in 1 tensor(s) set to zero" in ftz["notes"]
    assert subnormal_initializers(onnx.load(Repository(tmp_path / "repo").file(ftz["published_as"]))) == {}
    assert any(n.startswith("batch 8: onnx_fp32_ftz (FP32, subnormal weights set to zero) runs") for n in report["notes"])


def _timed(vid, kind, speedup):
    o = VariantOutcome(id=vid, kind=kind, runtime="onnxruntime", precision="fp32", options={}, status="passed")
    o.speedup = speedup
    return o


def test_the_note_divides_each_speedup_by_the_flushed_fp32s():
    notes = subnormal_speedup_notes(
        [
            _timed("onnx_fp32", "onnx_fp32", {"1": 1.0}),
            _timed("onnx_fp32_ftz", "onnx_fp32_ftz", {"1": 10.0}),
            _timed("onnx_fp16", "onnx_fp16", {"1": 12.0}),
        ]
    )
    assert notes == [
        "batch 1: onnx_fp32_ftz (FP32, subnormal weights set to zero) runs 10.00x FP32's p50: that part "
        "of every variant's speed-up is the subnormals', not the precision; against onnx_fp32_ftz: "
        "onnx_fp16 1.20x"
    ]
    assert subnormal_speedup_notes([_timed("onnx_fp32", "onnx_fp32", {"1": 1.0})]) == []
