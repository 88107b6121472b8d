"""A conversion that converted nothing is told apart from one that did, by what the converted graph holds."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tritonforge.builder.converters import CONVERTERS
from tritonforge.builder.converters.changed import op_summary
from tritonforge.builder.converters.onnx2fp16 import to_fp16


def _gemm(path):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _tree(path):
    """A one-tree regressor: its thresholds and weights are attributes, no float tensor math to convert."""
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        ["y"],
        domain="ai.onnx.ml",
        n_targets=1,
        nodes_treeids=[0, 0, 0],
        nodes_nodeids=[0, 1, 2],
        nodes_featureids=[0, 0, 0],
        nodes_values=[0.5, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0],
        target_treeids=[0, 0],
        target_nodeids=[1, 2],
        target_ids=[0, 0],
        target_weights=[1.0, 2.0],
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 3)])
    onnx.save(model, str(path))
    return path


def test_fp16_of_a_tree_converts_nothing_and_of_a_gemm_converts(tmp_path):
    fp16 = CONVERTERS["onnx_fp16"]
    to_fp16(_tree(tmp_path / "tree.onnx"), tmp_path / "tree16.onnx")
    to_fp16(_gemm(tmp_path / "gemm.onnx"), tmp_path / "gemm16.onnx")
    assert fp16.changed_nothing(tmp_path / "tree16.onnx")
    assert not fp16.changed_nothing(tmp_path / "gemm16.onnx")
    assert op_summary(tmp_path / "tree16.onnx") == "TreeEnsembleRegressor"


def test_int8_of_a_tree_converts_nothing_and_of_a_gemm_converts(tmp_path):
    from onnxruntime.quantization import quantize_dynamic

    int8 = CONVERTERS["onnx_int8_dynamic"]
    quantize_dynamic(str(_gemm(tmp_path / "gemm.onnx")), str(tmp_path / "gemm8.onnx"))
    assert not int8.changed_nothing(tmp_path / "gemm8.onnx")
    assert int8.changed_nothing(_tree(tmp_path / "tree.onnx"))
    assert CONVERTERS["onnx_int8_qdq"].changed_nothing(_tree(tmp_path / "tree.onnx"))


def _conv_then_gemm(path):
    rng = np.random.default_rng(1)
    conv_w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "conv_w")
    gemm_w = numpy_helper.from_array(rng.standard_normal((36, 5)).astype(np.float32), "gemm_w")
    shape = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "conv_w"], ["c"], name="conv"),
            helper.make_node("Reshape", ["c", "shape"], ["flat"]),
            helper.make_node("Gemm", ["flat", "gemm_w"], ["y"], name="gemm"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        [conv_w, gemm_w, shape],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_dynamic_int8_of_a_cnn_runs_in_onnx_runtime_by_default(tmp_path):
    """The serving runtime's CPU ConvInteger (ONNX Runtime 1.19, as in Triton 24.10) takes uint8 weights only (a
    CNN's default dynamic INT8 failed there with NOT_IMPLEMENTED): with the default int8 weights a Conv stays in
    float (said in a note) and the rest is quantized; with uint8 weights the Conv is quantized too."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from tritonforge.builder.converters.onnx2int8_dynamic import dynamic_op_types

    options = CONVERTERS["onnx_int8_dynamic"].Options
    src, x = _conv_then_gemm(tmp_path / "cnn.onnx"), np.ones((2, 1, 5, 5), np.float32)
    for weights, quant_type, conv_op in (("int8", QuantType.QInt8, "Conv"), ("uint8", QuantType.QUInt8, "ConvInteger")):
        notes: list[str] = []
        out = tmp_path / f"cnn_{weights}.onnx"
        quantize_dynamic(
            str(src), str(out), weight_type=quant_type, op_types_to_quantize=dynamic_op_types(options(weights=weights), notes)
        )
        ops = {n.op_type for n in onnx.load(str(out)).graph.node}
        assert conv_op in ops and "MatMulInteger" in ops, ops
        assert ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].shape == (2, 5)
        assert (notes != []) == (weights == "int8")
    notes = []
    assert dynamic_op_types(options(op_types=["Conv", "MatMul"]), notes) == ["MatMul"] and notes  # asked for: still float
