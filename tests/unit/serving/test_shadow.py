"""The shadow: sampled answers compared with FP32 by the gate's own code, a drifting rung demoted in the router.

No process and no thread: each test calls `compare` on what `offer` queued (the worker thread's step)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tritonforge.serving import metric_names as m
from tritonforge.serving.agreement import AgreementWindow, Comparator
from tritonforge.serving.gate import agreement_upper_bound
from tritonforge.serving.router import Router
from tritonforge.serving.settings import GateSettings, ShadowSettings
from tritonforge.serving.shadow import Shadow, ShadowSample
from tritonforge.serving.tally import Tally

W = np.random.default_rng(0).normal(size=(4, 6))


def reference(batch):
    """The FP32 model: x @ W."""
    return {"y": batch["x"] @ W}


def drifting(batch):
    """A variant that answers as FP32 until a feature exceeds 10 (out of distribution), then collapses."""
    out = reference(batch)["y"]
    bad = (np.abs(batch["x"]) > 10).any(1)
    out[bad] = out[bad][:, ::-1]  # the argmax moves
    return {"y": out}


class Rung:
    def __init__(self, name, run):
        self.name, self.run, self.calls = name, run, 0

    def call(self, batch):
        self.calls += 1
        return self.run(batch)

    def ready(self):
        return True


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def gate(**overrides):
    values = dict(
        min_cosine=0.99,
        min_top1_agreement=0.8,  # judged from 6 samples on (one disagreement in 5 reads 0.8)
        max_accuracy_drop=0.01,
        max_mean_rel=0.05,
        max_abs=None,
        outputs={},
        kinds={"y": "class_scores"},
        atol=1e-4,
        rtol=1e-3,
    )
    return GateSettings(**(values | overrides))


def settings(**overrides):
    values = dict(fraction=1.0, window=20, min_samples=10, max_pending=4, probation_s=None, confidence=0.99)
    values["reference_file"] = "fp32.onnx"
    return ShadowSettings(**(values | overrides), gate=gate())


def setup(draw=lambda: 0.0, ref=reference, clock=None, **overrides):
    variant, fp32 = Rung("int8", drifting), Rung("fp32", reference)
    states, logs = [], []
    router = Router([variant, fp32], 3, 30.0, Tally(), {"model": "m"}, on_state=lambda *a: states.append(a))
    shadow = Shadow(
        ref,
        "fp32",
        settings(**overrides),
        ["y"],
        router.tally,
        {"model": "m"},
        demote=router.demote,
        restore=router.restore,
        log=lambda level, message: logs.append((level, message)),
        draw=draw,
        clock=clock or Clock(),
    )
    return router, shadow, states, logs


def serve(router, shadow, rows):
    """Route one request per row, offer each answer to the shadow, compare what was queued; the answers."""
    requests = [{"x": np.array([r], dtype=np.float64)} for r in rows]
    routed = router.route(requests, range(len(requests)))
    for i, result in routed.results.items():
        shadow.offer(routed.rungs[i], requests[i], result)
        while not shadow._queue.empty():  # the worker keeps up
            shadow.compare(shadow._queue.get_nowait())
    return routed


def rows(n, scale=1.0, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 4)) * scale


def test_in_distribution_traffic_keeps_the_variant_serving():
    router, shadow, states, _ = setup()
    for k in range(5):
        serve(router, shadow, rows(10, seed=k))
    assert router.tally.total(m.SHADOW_SAMPLES, variant="int8") == 50
    assert router.tally.total(m.SHADOW_BROKEN) == 0 and states == []
    assert shadow.results["int8"].passed
    assert serve(router, shadow, rows(1)).rungs == {0: "int8"}


def test_out_of_distribution_traffic_demotes_the_variant_once_and_fp32_answers():
    router, shadow, states, _ = setup()
    serve(router, shadow, rows(10))
    ood = serve(router, shadow, rows(10, scale=100))
    assert set(ood.rungs.values()) == {"int8"}  # answered before the comparison judged it
    assert router.tally.total(m.SHADOW_BROKEN, variant="int8") > 0
    assert [s[:2] for s in states] == [("int8", "demoted")]
    assert "top-1 agreement" in states[0][2] and "needs >= 0.8" in states[0][2]
    after = serve(router, shadow, rows(5, scale=100))
    assert set(after.rungs.values()) == {"fp32"}
    for i, result in after.results.items():
        np.testing.assert_allclose(result["y"], reference({"x": rows(5, scale=100)[i : i + 1]})["y"], rtol=1e-12)
    serve(router, shadow, rows(10, scale=100))
    assert len(states) == 1  # the reference rung is never compared, the demotion logged once
    checks = {labels: v for (name, labels), v in shadow.gauges().items() if name == m.SHADOW_WINDOW}
    assert checks[(("check", "top-1 agreement upper bound"), ("variant", "int8"))] < 0.8


def test_no_judgement_before_the_window_holds_min_samples():
    router, shadow, states, _ = setup(min_samples=10)
    serve(router, shadow, rows(9, scale=100))
    assert states == [] and "int8" not in shadow.results
    serve(router, shadow, rows(1, scale=100))
    assert [s[:2] for s in states] == [("int8", "demoted")]


def test_nothing_is_sampled_at_fraction_zero_and_the_share_follows_the_draw():
    draws = iter([0.5, 0.05, 0.2, 0.01])
    router, shadow, _, _ = setup(draw=lambda: next(draws), fraction=0.1)
    serve(router, shadow, rows(4))
    assert router.tally.total(m.SHADOW_SAMPLES) == 2  # the draws under 0.1
    router, shadow, _, _ = setup(fraction=0.0)
    serve(router, shadow, rows(4))
    assert router.tally.total(m.SHADOW_SAMPLES) == 0


def test_a_full_queue_drops_and_counts_never_waits():
    router, shadow, _, _ = setup(max_pending=2)
    requests = [{"x": rows(1, seed=k)} for k in range(5)]
    routed = router.route(requests, range(5))
    for i, result in routed.results.items():
        shadow.offer(routed.rungs[i], requests[i], result)
    assert shadow._queue.qsize() == 2 and router.tally.total(m.SHADOW_DROPPED) == 3


def test_a_sample_is_a_copy_the_answer_is_never_touched():
    router, shadow, _, _ = setup()
    request = {"x": rows(1)}
    routed = router.route([request], [0])
    answer = routed.results[0]
    before = answer["y"].copy()
    shadow.offer("int8", request, answer)
    request["x"][:] = 1e6  # the server reuses the request's memory once it is answered
    shadow.compare(shadow._queue.get_nowait())
    np.testing.assert_array_equal(answer["y"], before)
    assert router.tally.total(m.SHADOW_BROKEN) == 0


def test_a_failing_reference_is_counted_and_logged_once_never_raised():
    def broken(batch):
        raise RuntimeError("onnxruntime: out of memory")

    router, shadow, states, logs = setup(ref=broken)
    serve(router, shadow, rows(3))
    assert router.tally.total(m.SHADOW_ERRORS) == 3 and states == []
    assert len([message for _, message in logs if "reference failed" in message]) == 1


def test_probation_restores_a_demoted_variant_with_an_empty_window():
    clock = Clock()
    router, shadow, states, _ = setup(probation_s=60.0, clock=clock)
    serve(router, shadow, rows(10, scale=100))
    assert [s[:2] for s in states] == [("int8", "demoted")]
    clock.t = 30.0
    shadow.tick()
    assert serve(router, shadow, rows(1)).rungs == {0: "fp32"}
    clock.t = 61.0
    shadow.tick()
    assert [s[:2] for s in states][-1] == ("int8", "restored") and "int8" not in shadow.windows
    assert serve(router, shadow, rows(1)).rungs == {0: "int8"}


def test_without_probation_only_a_new_model_restores():
    clock = Clock()
    router, shadow, states, _ = setup(clock=clock)
    serve(router, shadow, rows(10, scale=100))
    clock.t = 1e9
    shadow.tick()
    assert [s[:2] for s in states] == [("int8", "demoted")]


def test_the_window_judges_its_last_samples_with_the_comparators_own_figures():
    data = rows(30)
    data = data * np.r_[[1.0] * 25 + [100.0] * 5][:, None]  # the last 5 out of distribution
    ref, cand = reference({"x": data}), drifting({"x": data})
    window = AgreementWindow(["y"], 1e-4, 1e-3, ["y"], size=12)
    for k in range(0, 30, 7):  # batches that straddle the window's edge
        window.add({"y": ref["y"][k : k + 7]}, {"y": cand["y"][k : k + 7]})
    whole = Comparator(["y"], 1e-4, 1e-3, ["y"])
    whole.add({"y": ref["y"][-12:]}, {"y": cand["y"][-12:]})
    assert window.samples == 12
    got, want = window.metrics()["y"].to_dict(), whole.results()["y"].to_dict()
    figures = [k for k, v in want.items() if isinstance(v, float)]
    assert {k: got[k] for k in figures} == pytest.approx({k: want[k] for k in figures}, rel=1e-12)  # sums in another order
    assert {k: got[k] for k in want if k not in figures} == {k: want[k] for k in want if k not in figures}
    assert window.metrics()["y"].top1_agreement == pytest.approx(7 / 12)


def test_a_batch_larger_than_the_window_leaves_its_last_samples():
    data = rows(20) * np.r_[[1.0] * 8 + [100.0] * 12][:, None]
    ref, cand = reference({"x": data}), drifting({"x": data})
    window = AgreementWindow(["y"], 1e-4, 1e-3, ["y"], size=12)
    window.add({"y": ref["y"][:3]}, {"y": cand["y"][:3]})
    window.add(ref, cand)
    last = Comparator(["y"], 1e-4, 1e-3, ["y"])
    last.add({"y": ref["y"][-12:]}, {"y": cand["y"][-12:]})
    assert window.samples == 12
    assert window.metrics()["y"].top1_agreement == last.results()["y"].top1_agreement
    assert window.metrics()["y"].max_abs == last.results()["y"].max_abs


def test_a_window_is_judged_only_once_one_disagreement_alone_cannot_break_top1():
    assert settings(window=1000, min_samples=100).judged_after == 100  # 0.8: 6 samples would do
    strict = dataclasses.replace(settings(window=1000, min_samples=100), gate=gate(min_top1_agreement=0.995))
    assert strict.judged_after == 201  # one disagreement in 200 reads 0.995, which passes
    exact = dataclasses.replace(strict, gate=gate(min_top1_agreement=1.0))
    assert exact.judged_after == 100  # any disagreement breaks an exact threshold, however many samples
    embeddings = dataclasses.replace(strict, gate=gate(min_top1_agreement=0.995, kinds={"y": "embedding"}))
    assert embeddings.judged_after == 100


def test_samples_compared_together_run_one_reference_per_layout_and_count_as_one_by_one():
    calls = []

    def counted(batch):
        calls.append(len(batch["x"]))
        return reference(batch)

    data = rows(12, scale=np.r_[[1.0] * 9 + [100.0] * 3][:, None])
    samples = [ShadowSample("int8", {"x": data[k : k + 1]}, drifting({"x": data[k : k + 1]})) for k in range(12)]
    wide = {"x": np.ones((2, 5))}  # another layout: never joined with the others
    samples.append(ShadowSample("int8", wide, {"y": np.zeros((2, 6))}))
    _, together, _, _ = setup(ref=counted)
    together.compare(*samples[:12])
    _, alone, _, _ = setup()
    for sample in samples[:12]:
        alone.compare(sample)
    assert calls == [12]
    assert together.windows["int8"].metrics() == alone.windows["int8"].metrics()
    assert together.tally.total(m.SHADOW_BROKEN) == alone.tally.total(m.SHADOW_BROKEN) == 3
    calls.clear()
    _, mixed, _, _ = setup(ref=lambda b: counted(b) if b["x"].shape[1] == 4 else {"y": np.zeros((2, 6))})
    mixed.compare(*samples)
    assert calls == [12] and mixed.tally.total(m.SHADOW_SAMPLES) == 14


def test_the_upper_bound_of_an_agreement_narrows_with_samples_and_never_passes_one():
    assert agreement_upper_bound(0.994, 1000, 0.99) > 0.995  # 6 in 1000: within the noise of 0.995
    assert agreement_upper_bound(0.98, 1000, 0.99) < 0.995
    assert agreement_upper_bound(0.99, 100, 0.99) > agreement_upper_bound(0.99, 10_000, 0.99) > 0.99
    assert agreement_upper_bound(1.0, 5, 0.99) == 1.0 and agreement_upper_bound(0.0, 0, 0.99) == 1.0


@pytest.mark.parametrize(("disagreements", "demoted"), [(6, False), (30, True)])
def test_a_window_breaks_top1_only_beyond_sampling_noise(disagreements, demoted):
    strict = dict(window=1000, min_samples=100, max_pending=2000)
    router, shadow, states, _ = setup(**strict)
    shadow.settings = dataclasses.replace(shadow.settings, gate=gate(min_top1_agreement=0.995))
    data = rows(1000)
    data[np.linspace(0, 999, disagreements).astype(int)] *= 1000  # out of distribution, spread evenly
    serve(router, shadow, data)
    result = shadow.results["int8"]
    assert shadow.windows["int8"].metrics()["y"].top1_agreement == pytest.approx(1 - disagreements / 1000)
    assert ([s[:2] for s in states] == [("int8", "demoted")]) is demoted
    assert result.passed is not demoted
