"""The graph-optimization stage's own edits (tritonforge/builder/converters/fusion.py), on small hand-built
graphs with ONNX Runtime's fused Attention: a key-padding attention bias becomes `mask_index` with the same
answers, any other bias is kept (and its Attention stays in float when quantized), and a graph without attention
is not fused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonforge.builder.converters.fusion import (
    _attention_bias_to_mask,
    _drop_equal_qkv_sizes,
    float_attention,
    fused_graph,
)

B, S, H, HEADS = 3, 5, 8, 2


def _attention_model(bias: str) -> onnx.ModelProto:
    """x [B,S,H], mask [B,S] -> one com.microsoft Attention with an attention bias [B,1,S,S] computed from the
    mask: `padding` (0 where the key is kept, -inf where masked), `causal` (padding plus no look-ahead), or
    `scaled` (the mask times 5: not a padding mask)."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(H, 3 * H)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(3 * H,)).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(-np.inf, np.float32), "neg"),
        numpy_helper.from_array(np.array([B, 1, S, S], np.int64), "bias_shape"),
        numpy_helper.from_array(np.tril(np.ones((S, S), bool)), "lower"),
        numpy_helper.from_array(np.array(5.0, np.float32), "five"),
    ]
    nodes = [
        helper.make_node("Cast", ["mask"], ["keep"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["keep", "axes"], ["keep4"]),
        helper.make_node("Expand", ["keep4", "bias_shape"], ["keep_all"]),
    ]
    if bias == "causal":
        nodes.append(helper.make_node("And", ["keep_all", "lower"], ["open"]))
    else:
        nodes.append(helper.make_node("Identity", ["keep_all"], ["open"]))
    if bias == "scaled":
        nodes += [
            helper.make_node("Cast", ["open"], ["open_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["open_f", "five"], ["bias"]),
        ]
    else:
        nodes.append(helper.make_node("Where", ["open", "zero", "neg"], ["bias"]))
    nodes.append(
        helper.make_node(
            "Attention",
            ["x", "w", "b", "", "", "bias"],
            ["y"],
            name="attention",
            domain="com.microsoft",
            num_heads=HEADS,
            qkv_hidden_sizes=[H, H, H],
        )
    )
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", H]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", H])],
        weights,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def _batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.ones((B, S), np.int64)
    mask[1, 3:] = 0
    mask[2, 1:] = 0
    return {"x": rng.normal(size=(B, S, H)).astype(np.float32), "mask": mask}


def _run(model: onnx.ModelProto, batch: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, batch)[0]


def _attention(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "Attention")


def test_a_key_padding_bias_becomes_the_mask_index_with_the_same_answers():
    model = _attention_model("padding")
    before = _run(model, _batch())
    notes = _attention_bias_to_mask(model, _batch())
    _drop_equal_qkv_sizes(model)
    node = _attention(model)
    assert notes == [] and list(node.input) == ["x", "w", "b", "mask_mask_index"]
    assert not any(a.name == "qkv_hidden_sizes" for a in node.attribute)
    assert {n.op_type for n in model.graph.node} == {"Cast", "Attention"}  # the bias's subgraph is gone
    assert float_attention(model) == []
    after = _run(model, _batch())
    keep = _batch()["mask"].astype(bool)  # masked query rows are padding: nobody reads them
    np.testing.assert_allclose(after[keep], before[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", ["causal", "scaled"])
def test_any_other_bias_is_kept_and_its_attention_stays_in_float(bias):
    model = _attention_model(bias)
    before = _run(model, _batch())
    notes = _attention_bias_to_mask(model, _batch())
    assert len(notes) == 1 and "attention bias kept (not a key-padding mask): attention" in notes[0]
    assert _attention(model).input[5] == "bias"
    assert float_attention(model) == ["attention"]
    np.testing.assert_array_equal(_run(model, _batch()), before)


def test_a_graph_without_attention_is_not_fused(tmp_path):
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "mlp.onnx")
    fused = fused_graph(tmp_path / "mlp.onnx", tmp_path, {"x": np.ones((1, 4), np.float32)})
    assert fused.path is None and fused.reason == "no attention in the graph (no Softmax): nothing to fuse"
    assert not (tmp_path / "fused_fp32.onnx").exists()
    assert fused_graph(tmp_path / "mlp.onnx", tmp_path, {}).reason == fused.reason  # recorded once, read back
