"""The INT8 search's strategies, by the name spec.int8_search.strategy gives: the grid (every point of a
sensitivity-ranked grid gated with the spec's variants) and the accuracy-control search (points found one by
one, after the spec's variants; tritonforge/builder/int8_search.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tritonforge.builder.converters import VariantSpec, variant_spec
from tritonforge.builder.converters.base import SourceGraph
from tritonforge.builder.converters.int8_common import quantized_nodes
from tritonforge.builder.int8_search import AccuracyControlSearch, rank_sensitive_nodes, search_variants
from tritonforge.builder.variants.context import BuildContext
from tritonforge.builder.variants.outcome import VariantOutcome, spec_for


class SearchHost(Protocol):
    """What a strategy uses of the variant builder."""

    ctx: BuildContext
    notes: list[str]

    def gated(self, v: VariantSpec, search: bool) -> VariantOutcome: ...

    def convert(self, v: VariantSpec, outcome: VariantOutcome) -> Path: ...


@dataclass
class SearchRun:
    """The points a strategy gated itself, their specs, and its steps for the report."""

    outcomes: list[VariantOutcome] = field(default_factory=list)
    specs: list[VariantSpec] = field(default_factory=list)
    path: dict | None = None


class Int8Strategy(Protocol):
    def planned(self, host: SearchHost) -> list[VariantSpec]:
        """Points known before any is gated: gated with the spec's variants."""
        ...

    def adaptive(self, host: SearchHost) -> SearchRun:
        """Points chosen by gating, after the spec's variants."""
        ...


def _key(ctx: BuildContext, *, validation: bool) -> str:
    s = ctx.spec.int8_search
    gate = {"validation": ctx.validation.fingerprint(), "gate": ctx.spec.gate} if validation else {}
    return ctx.key(calibration=ctx.calibration.fingerprint() if ctx.calibration else "", search=s, **gate)


def search_graph(host: SearchHost) -> tuple[SourceGraph, Path]:
    """The FP32 graph the search quantizes (spec.int8_search.graph; auto: the fused one where there is one)."""
    ctx = host.ctx
    choice = ctx.spec.int8_search.graph
    if choice == "exported":
        return "exported", ctx.fp32
    fused = ctx.fused
    if fused.path is None:
        if choice == "fused":
            host.notes.append(f"int8_search.graph is fused, but {fused.reason}: the search quantizes the exported graph")
        return "exported", ctx.fp32
    return "fused", fused.path


class Grid:
    """A grid of INT8 points over the most sensitive nodes kept in float; a rebuild reuses the grid."""

    def planned(self, host: SearchHost) -> list[VariantSpec]:
        ctx = host.ctx
        with ctx.reporter.stage("INT8 search: sensitivity analysis and grid"):
            key = _key(ctx, validation=False)
            old = ctx.stages.lookup("int8_search", key)
            if old is not None:
                grid = [variant_spec(**d) for d in old["result"]]
            else:
                assert ctx.calibration is not None
                graph, source = search_graph(host)
                grid = search_variants(ctx.spec, source, graph, ctx.calibration, ctx.work, host.notes)
            ctx.stages.store("int8_search", key, result=[g.model_dump(mode="json") for g in grid])
        return grid

    def adaptive(self, host: SearchHost) -> SearchRun:
        return SearchRun()


class AccuracyControl:
    """The accuracy-control search; a rebuild with the same inputs replays its recorded points (each reused)."""

    def planned(self, host: SearchHost) -> list[VariantSpec]:
        return []

    def adaptive(self, host: SearchHost) -> SearchRun:
        ctx = host.ctx
        s = ctx.spec.int8_search
        key = _key(ctx, validation=True)
        old = ctx.stages.lookup("int8_search", key)
        if old is not None:
            specs = [variant_spec(**d) for d in old["result"]]
            search_path = old["path"]
            outcomes = [host.gated(v, True) for v in specs]
        else:
            calibration = ctx.calibration
            assert calibration is not None
            graph, source = search_graph(host)

            def rank(excluded: list[str]) -> list[str]:
                with ctx.reporter.stage(f"INT8 search: sensitivity with {len(excluded)} node(s) in float"):
                    return rank_sensitive_nodes(
                        source, calibration, ctx.inputs, s.op_types, ctx.work, host.notes, excluded=excluded
                    )

            def quantized(outcome: object) -> set[str] | None:
                assert isinstance(outcome, VariantOutcome)
                if outcome.status not in ("passed", "rejected"):
                    return None
                path = Path(outcome.file) if outcome.file else host.convert(spec_for(outcome, []), outcome)
                return quantized_nodes(path) if path.is_file() else None

            search = AccuracyControlSearch(ctx.spec, lambda v: host.gated(v, True), rank, quantized, graph)
            outcomes, path = search.run()
            specs = [spec_for(o, []) for o in outcomes]
            search_path = path.to_dict()
        ctx.stages.store("int8_search", key, result=[v.model_dump(mode="json") for v in specs], path=search_path)
        return SearchRun(outcomes, specs, search_path)


INT8_STRATEGIES: dict[str, Int8Strategy] = {}


def register_strategy(name: str, strategy: Int8Strategy) -> None:
    """Add a strategy under the name the spec gives it; a name is registered once."""
    if name in INT8_STRATEGIES:
        raise ValueError(f"INT8 search strategy '{name}' is already registered")
    INT8_STRATEGIES[name] = strategy


register_strategy("accuracy_control", AccuracyControl())
register_strategy("grid", Grid())
