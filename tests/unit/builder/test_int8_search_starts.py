"""The accuracy-control search's starts, fastest first: a later start that passes ends the starts, and the budget
left reverts nodes of the closest failing start before it (faster if it passes; the build's timing decides)."""

from __future__ import annotations

import pytest
from helpers import GatedPoint, search_spec

from tritonforge.builder.int8_search import AccuracyControlSearch
from tritonforge.errors import SpecError


def _evaluate(v):
    """int8 weights fail unless node 'bad' stays in float; uint8 weights pass as they are."""
    if v.kind == "onnx_int8_dynamic" and v.weights == "uint8":
        return GatedPoint(v, 0.01)
    return GatedPoint(v, 0.01 if "bad" in v.exclude_nodes else -0.02)


def test_a_passing_later_start_ends_the_starts_and_the_faster_one_is_still_reverted():
    spec = search_spec({"enabled": True, "max_evaluations": 6})  # the default starts: int8, uint8, entropy
    outcomes, path = AccuracyControlSearch(spec, _evaluate, lambda excluded: ["bad", "other"], graph="fused").run()
    assert [o.id for o in outcomes] == ["int8_dyn_pc_fused_x0", "int8_dyn_pc_u8_fused_x0", "int8_dyn_pc_fused_x1"]
    assert [(s.start, s.excluded, s.passed) for s in path.steps] == [
        ("dyn_pc_fused", [], False),
        ("dyn_pc_u8_fused", [], True),
        ("dyn_pc_fused", ["bad"], True),
    ]


def test_the_fastest_start_passing_ends_the_search():
    spec = search_spec({"enabled": True, "starts": [{"method": "dynamic", "weights": "uint8"}, {"method": "dynamic"}]})
    outcomes, _path = AccuracyControlSearch(spec, _evaluate, lambda excluded: ["bad"]).run()
    assert [o.id for o in outcomes] == ["int8_dyn_pc_u8_x0"]


def test_uint8_weights_are_for_dynamic_quantization_only():
    with pytest.raises(SpecError, match=r"int8_search\.starts\[0\]': weights: uint8 is for method dynamic"):
        search_spec({"enabled": True, "starts": [{"method": "entropy", "weights": "uint8"}]})
