"""The primary (served) variant follows the p50 speed-ups the report shows, against the fastest exact-FP32
configuration and with a margin over it; the published variants, their order and names are decided as a value."""

from __future__ import annotations

from tritonforge.builder.variants import VariantOutcome
from tritonforge.builder.variants.primary import PRIMARY_MARGIN, choose_primary, publish_order, search_winner
from tritonforge.builder.variants.timing import speedups, subnormal_speedup_notes


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


def _timed(vid, p50_ms, status="passed"):
    o = VariantOutcome(id=vid, kind=vid, runtime="onnxruntime", precision="x", options={}, status=status)
    o.timing = {b: {"p50_ms": ms} for b, ms in p50_ms.items()}
    return o


def _penalty_case(ftz_status="passed"):
    """FP32 pays a subnormal penalty at batch 64 (10 ms) that its flushed copy does not (0.5 ms); FP16 drops the
    subnormals too and is otherwise no faster than the flushed copy."""
    return [
        _timed("onnx_fp32", {"1": 1.0, "64": 10.0}),
        _timed("onnx_fp32_ftz", {"1": 0.98, "64": 0.5}, status=ftz_status),
        _timed("onnx_fp16", {"1": 0.97, "64": 0.49}),
    ]


def test_speedups_are_against_the_fastest_exact_fp32_configuration_that_passed():
    outcomes = _penalty_case()
    assert speedups(outcomes) == "onnx_fp32_ftz"
    fp32, ftz, fp16 = outcomes
    assert ftz.speedup == {"1": 1.0, "64": 1.0}
    assert fp32.speedup == {"1": 0.98, "64": 0.05}
    assert fp16.speedup == {"1": round(0.98 / 0.97, 3), "64": round(0.5 / 0.49, 3)}
    rejected = _penalty_case(ftz_status="rejected")  # a rewrite the gate refused is no reference
    assert speedups(rejected) == "onnx_fp32"
    assert rejected[2].speedup == {"1": round(1.0 / 0.97, 3), "64": round(10.0 / 0.49, 3)}


def test_no_variant_is_primary_for_a_penalty_fp32_need_not_pay():
    outcomes = _penalty_case()
    reference = speedups(outcomes)
    primary, why = choose_primary(outcomes, None, True, reference)
    assert primary == "onnx_fp32_ftz"  # FP32's answers; FP16's 20x at batch 64 was the subnormals' cost
    assert why.startswith("primary: onnx_fp32_ftz (FP32's answers), 4.52x faster than onnx_fp32: ")
    assert "onnx_fp16, is 1.01x/1.02x at batch 1/64 of onnx_fp32_ftz's p50" in why
    # Against FP32 alone (the flushed copy rejected), FP16 is primary, as it was before the reference existed.
    rejected = _penalty_case(ftz_status="rejected")
    assert choose_primary(rejected, None, True, speedups(rejected))[0] == "onnx_fp16"


def test_a_rewrite_within_the_margin_of_fp32_is_the_reference_but_fp32_is_served():
    outcomes = [_timed("onnx_fp32", {"1": 1.0}), _timed("onnx_fp32_ftz", {"1": 0.98}), _timed("onnx_fp16", {"1": 0.97})]
    assert speedups(outcomes) == "onnx_fp32_ftz"
    assert choose_primary(outcomes, None, True, "onnx_fp32_ftz")[0] == "onnx_fp32"


def test_the_subnormal_note_gives_fp32s_cost_per_batch_size():
    outcomes = _penalty_case()
    reference = speedups(outcomes)
    assert subnormal_speedup_notes(outcomes, reference) == [
        "batch 1: onnx_fp32_ftz (FP32, subnormal weights set to zero) runs 1.02x FP32's p50",
        "batch 64: onnx_fp32_ftz (FP32, subnormal weights set to zero) runs 20.00x FP32's p50: the cost of the "
        "subnormal weights on this CPU; speed-ups are against onnx_fp32_ftz, which does not pay it",
    ]
    assert subnormal_speedup_notes(outcomes[:1], "onnx_fp32") == []
