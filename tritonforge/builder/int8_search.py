"""INT8 search: the accuracy-control search (the default) or a small grid, both keeping the nodes most hurt by
quantization in float.

Sensitivity comes from per-tensor error analysis on the calibration data (never the validation data, which only
gates): the graph is quantized (static Q/DQ, MinMax, per channel, the nodes already reverted kept in float), the
float and Q/DQ graphs are run side by side with every intermediate tensor exposed
(onnxruntime.quantization.qdq_loss_debug), and each quantizable node is scored by how much signal-to-noise it
loses between its inputs and its output in the Q/DQ graph against the float one. A node's own quantization noise
(its input's SQNR against its own Q/DQ) is no guide: an outlier that takes a tensor's whole 8-bit range keeps that
tensor's SQNR high while every other value in it rounds to zero; the loss across the node shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

from tritonforge.builder.converters import VariantSpec, variant_spec
from tritonforge.builder.converters.base import SourceGraph
from tritonforge.builder.converters.int8_common import DatasetReader, preprocessed, quiet
from tritonforge.builder.converters.onnx2int8_qdq import quantize_qdq
from tritonforge.builder.data import Dataset
from tritonforge.spec import BuildSpec, Int8SearchSpec
from tritonforge.spec.model import Int8StartSpec


def rank_sensitive_nodes(
    fp32_onnx: Path,
    calibration: Dataset,
    input_names: list[str],
    op_types: list[str],
    work_dir: Path,
    notes: list[str],
    max_samples: int = 64,
    excluded: list[str] | None = None,
) -> list[str]:
    """Quantizable node names, most sensitive to quantization first, `excluded` ones kept in float and left out
    (empty, with a note, if analysis fails)."""
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
            quantize_qdq(pre, qdq, sample, input_names, "minmax", True, op_types, list(excluded or []))
            modify_model_output_intermediate_tensors(str(qdq), str(aug_q))
            modify_model_output_intermediate_tensors(str(pre), str(aug_f))
            q_act = collect_activations(str(aug_q), DatasetReader(sample, input_names))
            f_act = collect_activations(str(aug_f), DatasetReader(sample, input_names))
            errors = compute_activation_error(create_activation_matching(q_act, f_act))
    except Exception as e:
        notes.append(f"sensitivity analysis failed ({type(e).__name__}: {e}); excluding no nodes")
        return []
    skip = set(excluded or [])
    scored = []
    for order, node in enumerate(onnx.load(str(pre)).graph.node):
        if node.op_type not in op_types or node.name in skip:
            continue
        scored.append((-sqnr_loss(node, errors), order, node.name))
    return [name for _loss, _order, name in sorted(scored)]


def sqnr_loss(node: onnx.NodeProto, errors: dict[str, dict]) -> float:
    """The dB of signal-to-noise (quantized graph against float) a node loses from its inputs to its output; an
    input the analysis has no figure for (a weight, a graph input) counts as exact."""

    def sqnr(name: str) -> float:
        return errors.get(name, {}).get("xmodel_err", float("inf"))

    inputs = min((sqnr(n) for n in node.input if n in errors), default=float("inf"))
    outputs = min((sqnr(n) for n in node.output if n in errors), default=None)
    if outputs is None:
        return float("-inf")  # nothing measured downstream: rank it last
    if inputs == float("inf"):
        return float("inf") if outputs != float("inf") else 0.0
    return inputs - outputs


def candidates(search: Int8SearchSpec, ranked: list[str], graph: SourceGraph = "exported") -> list[VariantSpec]:
    """The grid: method x per-channel x number of most-sensitive nodes kept in float, quantizing `graph`."""
    out, seen = [], set()
    for method in search.methods:
        for per_channel in search.per_channel:
            for top in search.exclude_top:
                excluded = tuple(ranked[:top])
                key = (method, per_channel, excluded)
                if key in seen:
                    continue
                seen.add(key)
                vid = f"int8_{_tag(method, per_channel, graph)}_x{len(excluded)}"
                out.append(point(method, per_channel, search.op_types, list(excluded), vid, graph))
    return out


def search_variants(
    spec: BuildSpec, source: Path, graph: SourceGraph, calibration: Dataset, work_dir: Path, notes: list[str]
) -> list[VariantSpec]:
    """The search grid for this spec over the FP32 graph `source` (which is `graph`); sensitivity analysis only
    when some point excludes nodes."""
    s = spec.int8_search
    ranked: list[str] = []
    if any(k > 0 for k in s.exclude_top):
        ranked = rank_sensitive_nodes(source, calibration, [t.name for t in spec.inputs], s.op_types, work_dir, notes)
        if ranked:
            notes.append(f"INT8 search: most sensitive nodes: {', '.join(ranked[: max(s.exclude_top)])}")
    return candidates(s, ranked, graph)


# ---- the accuracy-control search ------------------------------------------------------------------------
def _tag(method: str, per_channel: bool, graph: SourceGraph, weights: str = "int8") -> str:
    u8 = "_u8" if weights == "uint8" else ""
    fused = "_fused" if graph == "fused" else ""
    return f"{'dyn' if method == 'dynamic' else method}_{'pc' if per_channel else 'pt'}{u8}{fused}"


def point(
    method: str,
    per_channel: bool,
    op_types: list[str],
    excluded: list[str],
    vid: str,
    graph: SourceGraph = "exported",
    weights: str = "int8",
) -> VariantSpec:
    """One INT8 configuration as a variant entry."""
    common = {"id": vid, "per_channel": per_channel, "op_types": op_types, "exclude_nodes": list(excluded), "graph": graph}
    if method == "dynamic":
        return variant_spec("onnx_int8_dynamic", weights=weights, **common)
    return variant_spec("onnx_int8_qdq", calibration_method=method, **common)


def worst_margin(outcome) -> float:
    """How far inside (+) or outside (-) the gate the outcome's worst check is; -inf when it was not gated."""
    checks = (outcome.gate or {}).get("checks") or []
    return (
        min((c["margin"] for c in checks), default=float("-inf")) if outcome.status in ("passed", "rejected") else float("-inf")
    )


@dataclass
class SearchStep:
    """One gate evaluation of the search."""

    id: str
    start: str
    excluded: list[str]
    margin: float | None  # the gate's worst margin (>= 0: passed); None: not gated (conversion failed)
    passed: bool
    kept: bool  # the step was kept (a revert that made the worst margin worse is undone)
    batched_only: bool = False  # passed batched, failed one sample at a time (dynamic INT8)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchPath:
    steps: list[SearchStep] = field(default_factory=list)
    rankings: list[list[str]] = field(default_factory=list)  # the sensitivity ranking before each revert

    def to_dict(self) -> dict:
        return {"steps": [s.to_dict() for s in self.steps], "rankings": self.rankings}


def _margin(step: SearchStep) -> float:
    return float("-inf") if step.margin is None else step.margin


class AccuracyControlSearch:
    """Find an INT8 point within the gate with as few nodes in float as it takes (see Int8SearchSpec).

    `evaluate(variant) -> VariantOutcome` converts and gates one point (the build's own stage, so a rebuild
    reuses every point it tried); `rank(excluded) -> [node]` ranks the quantizable nodes, most harmful first;
    `quantized(outcome) -> {node} | None` names the nodes the start really runs in INT8 (dynamic quantization
    leaves a MatMul of two activations in float, which the Q/DQ ranking quantizes): only those are reverted."""

    def __init__(
        self,
        spec: BuildSpec,
        evaluate: Callable,
        rank: Callable[[list[str]], list[str]],
        quantized: Callable[[object], set[str] | None] = lambda outcome: None,
        graph: SourceGraph = "exported",
    ) -> None:
        self.s = spec.int8_search
        self.graph = graph
        self.evaluate, self.rank, self.quantized = evaluate, rank, quantized
        self.outcomes: list = []
        self.path = SearchPath()

    def _try(self, start: Int8StartSpec, excluded: list[str]) -> tuple[object, SearchStep]:
        tag = _tag(start.method, start.per_channel, self.graph, start.weights)
        vid = f"int8_{tag}_x{len(excluded)}"
        if any(o.id == vid for o in self.outcomes):  # the same count of other nodes: tell the points apart
            vid = f"{vid}_s{len(self.outcomes)}"
        variant = point(start.method, start.per_channel, self.s.op_types, excluded, vid, self.graph, start.weights)
        outcome = self.evaluate(variant)
        self.outcomes.append(outcome)
        margin = worst_margin(outcome)
        step = SearchStep(
            vid,
            tag,
            list(excluded),
            None if margin == float("-inf") else margin,
            outcome.passed,
            True,
            any("failed one sample at a time" in n for n in outcome.notes),
        )
        self.path.steps.append(step)
        return outcome, step

    def run(self) -> tuple[list, SearchPath]:
        """Gate the starts (fastest first) until one passes; then, within the budget, revert nodes of the closest
        failing start before it (faster, if it can be made to pass; the build's timing decides)."""
        budget = self.s.max_evaluations
        best = None
        for start in self.s.starts:
            if len(self.outcomes) >= budget:
                break
            outcome, step = self._try(start, [])
            if step.passed:
                break  # the later starts are slower
            if best is None or _margin(step) > _margin(best[1]):
                best = (start, step, outcome)
        if best is None:  # the fastest start passes as it is (or nothing was tried)
            return self.outcomes, self.path
        start, current, start_outcome = best
        live = self.quantized(start_outcome)

        def rank(excluded: list[str]) -> list[str]:
            return [n for n in self.rank(excluded) if live is None or n in live]

        excluded: list[str] = []
        useless: set[str] = set()
        ranked = rank(excluded)
        self.path.rankings.append(ranked)
        while len(self.outcomes) < budget:
            group = [n for n in ranked if n not in excluded and n not in useless][: self.s.group_size]
            if not group:
                break
            outcome, step = self._try(start, excluded + group)
            if step.passed:
                break
            if _margin(step) > _margin(current):  # better: keep it, and rank what is still quantized again
                excluded, current = excluded + group, step
                ranked = rank(excluded)
                self.path.rankings.append(ranked)
            else:  # no better: undo, and never try these nodes again
                step.kept = False
                useless.update(group)
        return self.outcomes, self.path
