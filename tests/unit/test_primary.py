"""The primary (served) variant follows the p50 speed-ups the report shows, with a margin over FP32."""

from __future__ import annotations

from tritonforge.builder.variants import PRIMARY_MARGIN, VariantOutcome, choose_primary


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
