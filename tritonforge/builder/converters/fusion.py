"""The graph-optimization stage before precision variants: a transformer's attention (and the usual fusions
around it) fused into ONNX Runtime's kernels, once per build.

The fusions are onnxscript's rules for ONNX Runtime (`onnxscript.rewriter.ort_fusions`), which match the graphs
torch.onnx's dynamo exporter writes by their computation, not by node names: scaled dot-product attention ->
MultiHeadAttention -> `com.microsoft.Attention` with packed Q/K/V weights, SkipLayerNormalization, BiasGelu.
Two edits follow, each checked before it is made:

- constants are folded, so the packed Q/K/V weight is one initializer (a quantizer can only quantize a weight
  it can read);
- an Attention's additive attention bias that is only a key-padding mask made from one 2-D input (shown by
  running the bias's subgraph on a probe batch with padding: 0 where the mask is 1, very negative where it is 0,
  the same for every query row) becomes that mask as `mask_index`, the form ONNX Runtime's quantized attention
  (QAttention) takes. Any other bias is kept, and its Attention stays in float in INT8 variants
  (`float_attention`).

The result is a variant's source like the exported graph: the FP32 variant made from it is gated against FP32
like any variant, so a fusion that changed the answers cannot be published.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from tritonforge.serving.batching import Batch

FUSED_FILE = "fused_fp32.onnx"
ATTENTION_OPS = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"}
MS_DOMAIN = "com.microsoft"
# An additive bias at or below this is a masked key: softmax gives it no weight (ONNX Runtime masks with -10000).
MASKED_BIAS = -1.0e4


@dataclass
class FusedGraph:
    """The fused graph of one build, or why there is none."""

    path: Path | None
    fused_ops: dict[str, int] = field(default_factory=dict)  # com.microsoft op type -> count in the fused graph
    reason: str = ""  # why there is no fused graph
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(f"{n} {op}" for op, n in sorted(self.fused_ops.items()))

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "path": str(self.path) if self.path else None})

    @classmethod
    def from_json(cls, text: str) -> FusedGraph:
        d = json.loads(text)
        return cls(Path(d["path"]) if d["path"] else None, d["fused_ops"], d["reason"], d["notes"])


def fused_graph(fp32_onnx: Path, work_dir: Path, probe: Batch) -> FusedGraph:
    """The fused graph of `fp32_onnx` in `work_dir` (made once per build and reused), or the reason there is
    none. `probe` is one batch of the model's inputs (held-out data), used to check the mask edit."""
    record = work_dir / f"{FUSED_FILE}.json"
    if record.exists():
        return FusedGraph.from_json(record.read_text())
    result = _fuse(fp32_onnx, work_dir / FUSED_FILE, probe)
    record.write_text(result.to_json())
    return result


def _fuse(fp32_onnx: Path, out: Path, probe: Batch) -> FusedGraph:
    model = onnx.load(str(fp32_onnx))
    if not any(n.op_type == "Softmax" for n in model.graph.node):
        return FusedGraph(None, reason="no attention in the graph (no Softmax): nothing to fuse")
    import onnx_ir as ir
    from onnxscript import optimizer
    from onnxscript.rewriter import ort_fusions

    try:
        fused, _counts = ort_fusions.optimize_for_ort(ir.serde.deserialize_model(model))
        optimizer.fold_constants(fused, input_size_limit=1 << 40, output_size_limit=1 << 40)
        optimizer.remove_unused_nodes(fused)
        proto = ir.serde.serialize_model(fused)
    except Exception as e:  # a rule that fails on a graph it was not written for: no fused variant, the build goes on
        return FusedGraph(None, reason=f"onnxscript's ORT fusions failed: {type(e).__name__}: {str(e)[:300]}")
    ops = Counter(n.op_type for n in proto.graph.node if n.domain == MS_DOMAIN)
    if not ATTENTION_OPS & set(ops):
        found = ", ".join(f"{n} {op}" for op, n in sorted(ops.items())) or "none"
        return FusedGraph(None, reason=f"no attention matched onnxscript's ORT fusion rules (fused: {found})")
    try:
        notes = _attention_bias_to_mask(proto, probe)
        _drop_equal_qkv_sizes(proto)
        onnx.save(proto, str(out))  # a graph over protobuf's 2 GB limit cannot be saved inline: no fused variant
    except Exception as e:
        return FusedGraph(None, reason=f"the fused graph could not be finished: {type(e).__name__}: {str(e)[:300]}")
    return FusedGraph(out, dict(ops), notes=notes)


def float_attention(model: onnx.ModelProto) -> list[str]:
    """Attention nodes ONNX Runtime's quantizer would quantize wrongly: it writes QAttention without the
    attention bias (QAttention has no such input), so these must stay in float."""
    return [n.name for n in model.graph.node if n.op_type == "Attention" and len(n.input) > 5 and n.input[5]]


def _drop_equal_qkv_sizes(model: onnx.ModelProto) -> None:
    """Remove `qkv_hidden_sizes` where Q, K and V are equal (its default): the quantizer leaves an Attention
    that carries it in float."""
    for node in model.graph.node:
        if node.op_type != "Attention":
            continue
        sizes = [list(a.ints) for a in node.attribute if a.name == "qkv_hidden_sizes"]
        if sizes and len(set(sizes[0])) == 1:
            keep = [a for a in node.attribute if a.name != "qkv_hidden_sizes"]
            del node.attribute[:]
            node.attribute.extend(keep)


def _mask_source(graph: onnx.GraphProto, value: str) -> onnx.ValueInfoProto | None:
    """The one graph input `value` is computed from (ignoring what is read only through Shape), if it is 2-D
    and integer or boolean (a padding mask's form); else None."""
    producer = {o: n for n in graph.node for o in n.output}
    inputs = {i.name: i for i in graph.input}
    seen, found, todo = set(), set(), [value]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in inputs:
            found.add(name)
            continue
        node = producer.get(name)
        if node is not None and node.op_type != "Shape":
            todo.extend(i for i in node.input if i)
    if len(found) != 1:
        return None
    source = inputs[found.pop()]
    t = source.type.tensor_type
    integer = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}
    return source if t.elem_type in integer and len(t.shape.dim) == 2 else None


def _padded_probe(probe: Batch, mask: str) -> Batch:
    """Up to four rows of `probe` with the last position of the first row masked out (so padding is seen)."""
    batch = {k: np.array(v[:4]) for k, v in probe.items()}
    if batch[mask].shape[1] > 1:
        batch[mask][0, -1] = 0
    return batch


def _is_key_padding_bias(model: onnx.ModelProto, bias: str, mask: str, probe: Batch) -> bool:
    """Whether the value `bias`, run on a padded probe batch, is the key-padding form of input `mask`."""
    import onnxruntime as ort

    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.output[:]
    cut.graph.output.extend([onnx.helper.make_value_info(bias, onnx.TypeProto())])
    batch = _padded_probe(probe, mask)
    try:
        session = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {i.name: batch[i.name] for i in session.get_inputs()}
        (value,) = session.run(None, feeds)
    except Exception:
        return False
    keys = batch[mask].astype(bool)
    if value.ndim != 4 or value.shape[0] not in (1, len(keys)) or value.shape[-1] != keys.shape[1]:
        return False
    value = np.broadcast_to(value, (len(keys), *value.shape[1:]))
    want_open = np.broadcast_to(keys[:, None, None, :], value.shape)
    return bool(np.all(value[want_open] == 0) and np.all(value[~want_open] <= MASKED_BIAS))


def _attention_bias_to_mask(model: onnx.ModelProto, probe: Batch) -> list[str]:
    """Turn each Attention's key-padding attention bias into `mask_index` (see the module's docstring)."""
    graph = model.graph
    verdicts: dict[str, str | None] = {}  # bias value -> the mask input it is the padding form of (None: not one)
    casts: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.op_type != "Attention" or len(node.input) <= 5 or not node.input[5]:
            continue
        if any(node.input[i] for i in (3, 4)):
            kept.append(node.name)
            continue
        bias = node.input[5]
        if bias not in verdicts:
            source = _mask_source(graph, bias)
            ok = source is not None and source.name in probe and _is_key_padding_bias(model, bias, source.name, probe)
            verdicts[bias] = source.name if ok and source is not None else None
        mask = verdicts[bias]
        if mask is None:
            kept.append(node.name)
            continue
        if mask not in casts:
            casts[mask] = f"{mask}_mask_index"
        inputs = [*node.input[:3], casts[mask]]
        del node.input[:]
        node.input.extend(inputs)
    for mask, index in casts.items():
        cast = onnx.helper.make_node("Cast", [mask], [index], name=index, to=onnx.TensorProto.INT32)
        graph.node.insert(0, cast)
    _remove_dead_nodes(graph)
    if kept:
        return [f"attention bias kept (not a key-padding mask): {', '.join(kept)}; these stay in float in INT8 variants"]
    return []


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing reads, and initializers no node reads."""
    while True:
        used = {o.name for o in graph.output} | {i for n in graph.node for i in n.input}
        live = [n for n in graph.node if any(o in used for o in n.output)]
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    used = {i for n in graph.node for i in n.input}
    weights = [w for w in graph.initializer if w.name in used]
    if len(weights) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(weights)
