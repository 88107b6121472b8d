"""The accuracy-control search's starts, fastest first: a later start that passes ends the starts, and the budget
left reverts nodes of the closest failing start before it (faster if it passes; the build's timing decides)."""

from __future__ import annotations

import pytest

from tritonforge.builder.int8_search import AccuracyControlSearch
from tritonforge.errors import SpecError
from tritonforge.spec import parse_spec


def _spec(int8_search: dict):
    return parse_spec(
        {
            "name": "m",
            "source": {"kind": "onnx", "path": "m.onnx"},
            "max_batch_size": 4,
            "inputs": [{"name": "x", "dtype": "float32", "shape": [2]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
            "validation": {"data": {"npz": "v.npz"}},
            "calibration": {"data": {"npz": "c.npz"}},
            "int8_search": int8_search,
        }
    )


class Outcome:
    def __init__(self, v, margin: float) -> None:
        self.id, self.status, self.notes = v.variant_id, "passed" if margin >= 0 else "rejected", []
        self.gate = {"checks": [{"margin": margin}]}

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _evaluate(v):
    """int8 weights fail unless node 'bad' stays in float; uint8 weights pass as they are."""
    if v.kind == "onnx_int8_dynamic" and v.weights == "uint8":
        return Outcome(v, 0.01)
    return Outcome(v, 0.01 if "bad" in v.exclude_nodes else -0.02)


def test_a_passing_later_start_ends_the_starts_and_the_faster_one_is_still_reverted():
    spec = _spec({"enabled": True, "max_evaluations": 6})  # the default starts: int8, uint8, entropy
    outcomes, path = AccuracyControlSearch(spec, _evaluate, lambda excluded: ["bad", "other"], graph="fused").run()
    assert [o.id for o in outcomes] == ["int8_dyn_pc_fused_x0", "int8_dyn_pc_u8_fused_x0", "int8_dyn_pc_fused_x1"]
    assert [(s.start, s.excluded, s.passed) for s in path.steps] == [
        ("dyn_pc_fused", [], False),
        ("dyn_pc_u8_fused", [], True),
        ("dyn_pc_fused", ["bad"], True),
    ]


def test_the_fastest_start_passing_ends_the_search():
    spec = _spec({"enabled": True, "starts": [{"method": "dynamic", "weights": "uint8"}, {"method": "dynamic"}]})
    outcomes, _path = AccuracyControlSearch(spec, _evaluate, lambda excluded: ["bad"]).run()
    assert [o.id for o in outcomes] == ["int8_dyn_pc_u8_x0"]


def test_uint8_weights_are_for_dynamic_quantization_only():
    with pytest.raises(SpecError, match=r"int8_search\.starts\[0\]': weights: uint8 is for method dynamic"):
        _spec({"enabled": True, "starts": [{"method": "entropy", "weights": "uint8"}]})
