"""The primary (served) variant follows the p50 speed-ups the report shows, with a margin over FP32; the published
variants, their order and names are decided as a value."""

from __future__ import annotations

from tritonforge.builder.variants import VariantOutcome
from tritonforge.builder.variants.primary import PRIMARY_MARGIN, choose_primary, publish_order, search_winner


def _v(vid, speedup, status="passed", kind=None, search=False):
    o = VariantOutcome(id=vid, kind=kind or vid, runtime="onnxruntime", precision="x", options={}, search=search, status=status)
    o.speedup = speedup
    return o


FP32 = _v("onnx_fp32", {"1": 1.0, "32": 1.0})


def test_the_fastest_by_the_shown_p50_is_primary_with_the_figures_in_the_note():
    primary, why = choose_primary(
        [FP32, _v("onnx_fp16", {"1": 1.3, "32": 1.4}), _v("onnx_int8_dynamic", {"1": 1.1, "32": 1.2})], None, True
    )
    assert primary == "onnx_fp16"
    assert why == "primary: onnx_fp16, the fastest passing variant: p50 1.30x/1.40x at batch 1/32 of FP32's"


def test_a_variant_slower_than_fp32_at_p50_is_never_primary():
    """The multi-input model's case: FP16 at 0.89x / 0.99x of FP32's p50 adds error for no gain."""
    primary, why = choose_primary([FP32, _v("onnx_fp16", {"1": 0.89, "32": 0.99})], None, True)
    assert primary == "onnx_fp32"
    assert "onnx_fp16, is 0.89x/0.99x at batch 1/32 of FP32's p50" in why and f"{PRIMARY_MARGIN:.2f}x faster" in why


def test_within_the_margin_fp32_stays_and_beyond_it_the_variant_wins():
    just_under = PRIMARY_MARGIN - 0.01
    assert choose_primary([FP32, _v("onnx_fp16", {"1": just_under})], None, True)[0] == "onnx_fp32"
    assert choose_primary([FP32, _v("onnx_fp16", {"1": PRIMARY_MARGIN + 0.01})], None, True)[0] == "onnx_fp16"


def test_rejected_variants_and_search_points_that_did_not_win_are_not_candidates():
    outcomes = [
        FP32,
        _v("onnx_fp16", {"1": 3.0}, status="rejected"),
        _v("int8_dyn_pc_x0", {"1": 2.5}, kind="onnx_int8_dynamic", search=True),
        _v("int8_dyn_pc_x1", {"1": 2.0}, kind="onnx_int8_dynamic", search=True),
    ]
    assert choose_primary(outcomes, "int8_dyn_pc_x1", True)[0] == "int8_dyn_pc_x1"
    assert choose_primary(outcomes, None, False) == (
        "onnx_fp32",
        "primary: onnx_fp32 (timing is off, so no variant has shown it is faster)",
    )


def _search_points():
    return [
        FP32,
        _v("onnx_fp16", {"1": 1.3, "32": 1.4}),
        _v("onnx_int8_qdq", {"1": 3.0}, status="rejected"),
        _v("int8_dyn_pc_x0", {"1": 2.5}, kind="onnx_int8_dynamic", search=True, status="rejected"),
        _v("int8_dyn_pc_x1", {"1": 2.0}, kind="onnx_int8_dynamic", search=True),
        _v("int8_dyn_pc_x2", {"1": 1.8}, kind="onnx_int8_dynamic", search=True),
    ]


def test_the_search_winner_is_its_fastest_passing_point():
    outcomes = _search_points()
    assert search_winner(outcomes) == "int8_dyn_pc_x1"
    assert search_winner([FP32, _v("onnx_fp16", {"1": 2.0})]) is None


def test_the_publish_order_is_primary_first_then_by_speed_and_changes_no_outcome():
    outcomes = _search_points()
    order = publish_order(outcomes, "onnx_fp16", "int8_dyn_pc_x1", lambda vid: f"m_{vid}")
    assert [o.id for o in order.published] == ["onnx_fp16", "int8_dyn_pc_x1", "onnx_fp32"]
    assert order.names == {"onnx_fp16": "m_onnx_fp16", "int8_dyn_pc_x1": "m_onnx_int8", "onnx_fp32": "m_onnx_fp32"}
    assert [o.published_as for o in order.published] == ["m_onnx_fp16", "m_onnx_int8", "m_onnx_fp32"]
    assert all(o.published_as == "" for o in outcomes)  # the order is a value: the outcomes are untouched
    fp32_first = publish_order(outcomes, "onnx_fp32", None, lambda vid: f"m_{vid}")
    assert [o.id for o in fp32_first.published] == ["onnx_fp32", "onnx_fp16"]  # no winner: no search point
