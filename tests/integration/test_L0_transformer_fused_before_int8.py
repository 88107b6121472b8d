"""MiniLM's graph is fused before it is quantized: its attention fused by onnxscript's ORT fusions into six
com.microsoft Attention nodes (the padding mask as mask_index), the fused FP32 variant within the export
tolerance and gated as served, the INT8 search quantizing the fused graph (QAttention). A model without
attention builds as before, the fused variant skipped with the reason. No assertion depends on which INT8 point
this CPU lets pass."""

from __future__ import annotations

import collections

import onnx
from helpers import digits_spec_copy, minilm_spec_copy

from tritonforge.builder.converters import variant_spec
from tritonforge.builder.converters.base import ConversionJob
from tritonforge.builder.converters.int8_common import quantized_nodes
from tritonforge.builder.converters.onnx2int8_dynamic import OnnxInt8Dynamic
from tritonforge.builder.pipeline import build
from tritonforge.repository.reader import Repository
from tritonforge.spec import load_spec

STARTS = [{"method": "dynamic"}, {"method": "dynamic", "weights": "uint8"}]


def test_minilm_is_fused_verified_as_served_and_quantized_fused(tmp_path):
    spec_path = minilm_spec_copy(
        tmp_path / "spec",
        variants=[{"kind": "onnx_fp32_fused"}],
        int8_search={"enabled": True, "max_evaluations": 2, "starts": STARTS},
    )
    outcome = build(spec_path, tmp_path / "repo")
    report = outcome.report.to_dict()
    fused = next(v for v in report["variants"] if v["id"] == "onnx_fp32_fused")
    assert fused["status"] == "passed" and fused["published_as"] == "minilm_onnx_fp32_fused"
    embedding = fused["comparison"]["outputs"]["embedding"]
    assert fused["comparison"]["within_tolerance"] and embedding["min_cosine"] >= 1 - 1e-6
    assert "from the fused graph (6 Attention, 6 BiasGelu, 12 SkipLayerNormalization" in fused["notes"][0]
    assert any(n.startswith("gated as served (padded to the serving buckets)") for n in fused["notes"])

    fused_file = Repository(tmp_path / "repo").file("minilm_onnx_fp32_fused")
    graph = onnx.load(str(fused_file)).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["Attention"] == 6 and ops["Softmax"] == 0
    attention = [n for n in graph.node if n.op_type == "Attention"]
    assert {tuple(n.input[3:]) for n in attention} == {("attention_mask_mask_index",)}  # no attention bias left

    tried = [v for v in report["variants"] if v["search"]]
    assert tried and all(v["options"]["graph"] == "fused" and "_fused_" in v["id"] for v in tried)
    assert all(s["start"].endswith("_fused") for s in report["int8_search"]["path"]["steps"])

    # the search's quantizer on the fused graph: each layer's attention is one QAttention
    out = tmp_path / "int8.onnx"
    spec = load_spec(spec_path)
    OnnxInt8Dynamic().convert(
        ConversionJob(spec, variant_spec("onnx_int8_dynamic", per_channel=True, graph="fused"), fused_file, out, tmp_path)
    )
    quantized = collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    assert quantized["QAttention"] == 6 and quantized["MatMulInteger"] == 18
    assert {n.name for n in attention} <= quantized_nodes(out)  # the search can rank and revert them


def test_a_model_without_attention_skips_the_fused_variant_with_the_reason(tmp_path):
    spec_path = digits_spec_copy(tmp_path / "spec", variants=[{"kind": "onnx_fp32_fused"}])
    report = build(spec_path, tmp_path / "repo").report.to_dict()
    fused = next(v for v in report["variants"] if v["id"] == "onnx_fp32_fused")
    assert fused["status"] == "skipped"
    assert fused["reason"] == "no attention in the graph (no Softmax): nothing to fuse"
    published = [v["published_as"] for v in report["variants"] if v["published_as"]]
    assert "digits_onnx_fp32" in published and not any("fused" in p for p in published)
