"""The accuracy-control INT8 search on a model with a known sensitive node: the trained digits MLP behind an
input outlier (tests/models/outlier_digits.py), whose first Gemm INT8 cannot quantize on any CPU."""

from __future__ import annotations

import pytest
from helpers import GatedPoint, outlier_digits_spec, search_spec

from tritonforge.builder.pipeline import build

LENIENT = {"min_cosine": 0.9, "min_top1_agreement": 0.95, "max_accuracy_drop": 0.05}


def _search(tmp_path, **search):
    spec = outlier_digits_spec(
        tmp_path / "spec",
        variants=[],
        gate=LENIENT,
        timing={"enabled": False},
        int8_search={"enabled": True, "starts": [{"method": "dynamic", "per_channel": True}], **search},
    )
    report = build(spec, tmp_path / "repo").report.to_dict()  # as build_report.json holds it
    return report, report["int8_search"]


def test_the_search_reverts_the_sensitive_node_and_passes(tmp_path):
    report, search = _search(tmp_path, max_evaluations=4)
    steps = search["path"]["steps"]
    assert steps[0]["excluded"] == [] and not steps[0]["passed"] and steps[0]["margin"] < -0.4  # fails by far
    ranked = search["path"]["rankings"][0]
    assert sorted(ranked) == ["node_linear", "node_linear_1", "node_linear_2"]  # the MLP's Gemms, all quantized
    assert steps[-1]["passed"] and steps[-1]["excluded"] == [ranked[0]]  # one revert was enough
    assert search["evaluations"] == 2 <= 4
    winner = next(v for v in report["variants"] if v["id"] == search["winner"])
    assert winner["published_as"] == "digits_onnx_int8"
    assert winner["options"]["exclude_nodes"] == [ranked[0]]
    assert ranked[0] == "node_linear"  # the first Gemm: its input is the concatenation with the constant 1e4


def test_the_search_stops_within_its_budget_and_reports_the_best_failing_point(tmp_path):
    report, search = _search(tmp_path, max_evaluations=1)
    assert search["evaluations"] == 1 and search["winner"] is None
    assert search["best"]["id"] == search["tried"][0] and "FAILS by" in search["best"]["reason"]
    assert "No INT8 point passed the gate. Closest" in (tmp_path / "repo" / "digits" / "build_report.md").read_text()


def test_a_revert_that_does_not_help_is_undone(tmp_path):
    """Reverting a node other than the sensitive one changes nothing that matters: that step is undone and the
    search goes on to the next node."""
    from tritonforge.builder.int8_search import AccuracyControlSearch

    def evaluate(v):  # only reverting "bad" helps; reverting both passes
        excluded = set(v.exclude_nodes)
        return GatedPoint(v, 0.1 if "bad" in excluded else -0.5)

    spec = search_spec({"enabled": True, "starts": [{"method": "dynamic"}], "max_evaluations": 5})
    outcomes, path = AccuracyControlSearch(spec, evaluate, lambda excluded: ["harmless", "bad", "other"]).run()
    kept = [(s.excluded, s.kept, s.passed) for s in path.steps]
    assert kept == [([], True, False), (["harmless"], False, False), (["bad"], True, True)]


@pytest.mark.parametrize("budget", [1, 3])
def test_evaluations_never_exceed_the_budget(tmp_path, budget):
    from tritonforge.builder.int8_search import AccuracyControlSearch

    class Failing:
        status, notes, gate = "rejected", [], {"checks": [{"margin": -1.0}]}
        passed = False

        def __init__(self, v):
            self.id = v.variant_id

    spec = search_spec({"enabled": True, "max_evaluations": budget})
    outcomes, path = AccuracyControlSearch(spec, Failing, lambda excluded: ["a", "b", "c", "d"]).run()
    assert len(outcomes) == budget == len(path.steps)


def test_the_grid_keeps_the_most_sensitive_nodes_in_float(tmp_path):
    spec = outlier_digits_spec(
        tmp_path / "spec",
        variants=[],
        gate=LENIENT,
        timing={"enabled": False},
        int8_search={"enabled": True, "strategy": "grid", "methods": ["dynamic"], "per_channel": [True], "exclude_top": [0, 1]},
    )
    report = build(spec, tmp_path / "repo").report.to_dict()
    search = report["int8_search"]
    assert search["strategy"] == "grid" and search["tried"] == ["int8_dyn_pc_x0", "int8_dyn_pc_x1"]
    outcome = {v["id"]: v for v in report["variants"]}
    assert outcome["int8_dyn_pc_x0"]["status"] == "rejected"
    assert outcome["int8_dyn_pc_x1"]["status"] == "passed" and search["winner"] == "int8_dyn_pc_x1"
    assert outcome["int8_dyn_pc_x1"]["options"]["exclude_nodes"] == ["node_linear"]  # the Gemm behind the outlier
    assert any(n == "INT8 search: most sensitive nodes: node_linear" for n in report["notes"])


def test_only_nodes_the_start_really_quantizes_are_reverted(tmp_path):
    """Dynamic quantization leaves a MatMul of two activations (attention's) in float, while the Q/DQ graph the
    ranking runs quantizes it: reverting such a node changes nothing, so it is never tried."""
    from tritonforge.builder.int8_search import AccuracyControlSearch

    spec = search_spec({"enabled": True, "starts": [{"method": "dynamic"}], "max_evaluations": 5})
    search = AccuracyControlSearch(
        spec,
        lambda v: GatedPoint(v, 0.1 if "bad" in v.exclude_nodes else -0.5),
        lambda excluded: ["attention", "bad", "other"],
        lambda outcome: {"bad", "other"},
    )
    outcomes, path = search.run()
    assert [s.excluded for s in path.steps] == [[], ["bad"]] and path.steps[-1].passed
    assert path.rankings == [["bad", "other"]]


def test_quantized_nodes_tells_what_each_quantizer_really_quantized(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

    from tritonforge.builder.converters.int8_common import equal_batches, quantized_nodes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 8])
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),  # a weight: both quantize it
        helper.make_node("Transpose", ["h"], ["ht"], name="t"),
        helper.make_node("MatMul", ["ht", "h"], ["hh"], name="activations"),  # two activations: only Q/DQ
        helper.make_node("MatMul", ["x", "hh"], ["y"], name="out"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "f.onnx"))
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "dyn.onnx"), op_types_to_quantize=["MatMul"])
    assert "dense" in quantized_nodes(tmp_path / "dyn.onnx")
    assert "activations" not in quantized_nodes(tmp_path / "dyn.onnx")

    batches = [{"x": np.ones((4, 8), np.float32)}, {"x": np.ones((4, 8), np.float32)}, {"x": np.ones((3, 8), np.float32)}]
    equal = equal_batches(batches)
    assert len(equal) == 11 and {b["x"].shape for b in equal} == {(1, 8)}  # a shorter last batch: items one by one
    assert equal_batches(batches[:2]) == batches[:2]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(tmp_path / "f.onnx"),
        str(tmp_path / "qdq.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
    )
    assert {"dense", "activations", "out"} <= quantized_nodes(tmp_path / "qdq.onnx")
