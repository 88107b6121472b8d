"""INT8 search: a small grid of quantization settings, plus the nodes most hurt by quantization kept in float.

Sensitivity comes from per-tensor error analysis on the calibration data (never the validation data): the
graph is quantized once (static Q/DQ, MinMax, per channel), the float and Q/DQ graphs are run side by side with
every intermediate tensor exposed, and each quantized tensor's signal-to-quantization-noise ratio is computed
(onnxruntime.quantization.qdq_loss_debug). The quantizable ops that consume the worst tensors come first.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from tritonforge.build.converters.int8_common import DatasetReader, preprocessed, quiet
from tritonforge.build.converters.onnx2int8_qdq import quantize_qdq
from tritonforge.build.data import Dataset
from tritonforge.build.spec import BuildSpec, Int8SearchSpec, VariantSpec


def rank_sensitive_nodes(fp32_onnx: Path, calibration: Dataset, input_names: list[str], op_types: list[str],
                         work_dir: Path, notes: list[str], max_samples: int = 64) -> list[str]:
    """Quantizable node names, most sensitive to quantization first (empty, with a note, if analysis fails)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    pre = preprocessed(fp32_onnx, work_dir, notes)
    sample = calibration.rebatch(16)
    sample = Dataset(sample.batches[: max(1, max_samples // 16)], None, calibration.origin)
    qdq = work_dir / "sensitivity_qdq.onnx"
    aug_q, aug_f = work_dir / "sensitivity_qdq_aug.onnx", work_dir / "sensitivity_fp32_aug.onnx"
    try:
        with quiet():
            quantize_qdq(pre, qdq, sample, input_names, "minmax", True, op_types)
            modify_model_output_intermediate_tensors(str(qdq), str(aug_q))
            modify_model_output_intermediate_tensors(str(pre), str(aug_f))
            q_act = collect_activations(str(aug_q), DatasetReader(sample, input_names))
            f_act = collect_activations(str(aug_f), DatasetReader(sample, input_names))
            errors = compute_activation_error(create_activation_matching(q_act, f_act))
    except Exception as e:
        notes.append(f"sensitivity analysis failed ({type(e).__name__}: {e}); excluding no nodes")
        return []
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in onnx.load(str(pre)).graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    ranked: list[str] = []
    for _sqnr, tensor in sorted((v.get("qdq_err", float("inf")), k) for k, v in errors.items()):
        for node in consumers.get(tensor, []):
            if node.op_type in op_types and node.name not in ranked:
                ranked.append(node.name)
    return ranked


def candidates(search: Int8SearchSpec, ranked: list[str]) -> list[VariantSpec]:
    """The grid: method x per-channel x number of most-sensitive nodes kept in float."""
    out, seen = [], set()
    for method in search.methods:
        for per_channel in search.per_channel:
            for top in search.exclude_top:
                excluded = tuple(ranked[:top])
                key = (method, per_channel, excluded)
                if key in seen:
                    continue
                seen.add(key)
                tag = "dyn" if method == "dynamic" else method
                vid = f"int8_{tag}_{'pc' if per_channel else 'pt'}_x{len(excluded)}"
                if method == "dynamic":
                    out.append(VariantSpec(kind="onnx_int8_dynamic", id=vid, per_channel=per_channel,
                                           op_types=search.op_types, exclude_nodes=list(excluded)))
                else:
                    out.append(VariantSpec(kind="onnx_int8_qdq", id=vid, per_channel=per_channel,
                                           calibration_method=method, op_types=search.op_types,
                                           exclude_nodes=list(excluded)))
    return out


def search_variants(spec: BuildSpec, fp32_onnx: Path, calibration: Dataset, work_dir: Path,
                    notes: list[str]) -> list[VariantSpec]:
    """The search grid for this spec (sensitivity analysis only when some point excludes nodes)."""
    s = spec.int8_search
    ranked: list[str] = []
    if any(k > 0 for k in s.exclude_top):
        ranked = rank_sensitive_nodes(fp32_onnx, calibration, [t.name for t in spec.inputs], s.op_types,
                                      work_dir, notes)
        if ranked:
            notes.append(f"INT8 search: most sensitive nodes: {', '.join(ranked[:max(s.exclude_top)])}")
    return candidates(s, ranked)
