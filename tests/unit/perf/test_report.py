"""The perf report answers: a verdict first (the best point under the objective, against the first point), each
point's real stability, CPU use, void points without numbers, readable plots."""

from __future__ import annotations

import dataclasses

from tritonforge.perf.analyzer import PerfPoint
from tritonforge.perf.report import concurrency_ticks, markdown, ranked, stability_summary, verdicts
from tritonforge.perf.sweep import SweepResult

SETTINGS = {
    "url": "127.0.0.1:8001",
    "protocol": "grpc",
    "measurement_mode": "time_windows",
    "measurement_interval_ms": 1000,
    "stability_pct": 15.0,
}
MACHINE = {"cpu": {"model": "AMD EPYC", "cores": 2}, "gpu": {"absent": "no NVIDIA GPU"}}


def _point(conc: int, throughput: float, p99_ms: float, stability: float | None = 15.0, label="compute", **extra) -> PerfPoint:
    required = [
        f.name
        for f in dataclasses.fields(PerfPoint)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    values = {name: 1000.0 for name in required}
    values.update(model="digits", batch_size=1, concurrency=conc, request_rate=None, throughput=throughput)
    values.update(p99_us=p99_ms * 1000, p50_us=p99_ms * 500)
    point = PerfPoint(**values, stability_pct=stability, label=label)
    for k, v in extra.items():
        setattr(point, k, v)
    return point


def _result(*points: PerfPoint) -> SweepResult:
    return SweepResult(list(points), dict(SETTINGS), {}, MACHINE, duration_s=12.0)


SWEEP = _result(_point(1, 1540.0, 0.8), _point(2, 2900.0, 1.4, 30.0), _point(4, 4100.0, 3.1, 30.0), _point(8, 5104.0, 6.2, 30.0))


def test_the_best_point_is_the_highest_throughput_or_within_the_p99_budget():
    assert [p.concurrency for p in ranked(SWEEP.points)] == [8, 4, 2, 1]
    assert [p.concurrency for p in ranked(SWEEP.points, 4.0)] == [4, 2, 1]
    (v,) = verdicts(SWEEP)
    assert v["best"]["concurrency"] == 8 and round(v["gain_pct"]) == 231
    assert v["line"] == (
        "digits (compute): best: 5104.0 infer/s at p99 6.20 ms (concurrency 8, batch 1), stable within 30% only, "
        "+231% over the first point (concurrency 1, batch 1: 1540.0 infer/s, p99 0.80 ms)"
    )
    (v,) = verdicts(SWEEP, 4.0)
    assert v["best"]["concurrency"] == 4
    assert v["line"].startswith("digits (compute): best within p99 4 ms: 4100.0 infer/s at p99 3.10 ms (concurrency 4, batch 1)")
    assert v["line"].endswith(
        "+166% over the first point (concurrency 1, batch 1: 1540.0 infer/s, p99 0.80 ms); 1 of 4 points over the budget"
    )
    (v,) = verdicts(SWEEP, 0.5)
    assert v["best"] is None and v["line"] == (
        "digits (compute): no point kept p99 within 0.5 ms (lowest p99 0.80 ms, concurrency 1, batch 1)"
    )


def test_a_failed_or_void_point_is_never_the_best_and_a_void_first_point_gives_no_gain():
    fast_void = _point(8, 9000.0, 1.0).voided("86% answered by a cache")
    failed = PerfPoint.failed("digits", 1, 16, None, "perf_analyzer failed")
    failed.label = "compute"
    (v,) = verdicts(_result(_point(1, 1540.0, 0.8), _point(4, 4100.0, 3.1), fast_void, failed))
    assert v["best"]["concurrency"] == 4
    void_first = _result(_point(1, 1540.0, 0.8).voided("hits"), _point(4, 4100.0, 3.1))
    (v,) = verdicts(void_first)
    assert "gain_pct" not in v and v["text"].endswith("the first point (concurrency 1, batch 1) was void: no gain given")


def test_each_series_gets_its_verdict_compute_first():
    cache = [_point(c, 20000.0 + c, 0.3, label="cache") for c in (1, 4)]
    result = _result(*cache, *SWEEP.points)
    assert [(v["model"], v["series"]) for v in verdicts(result)] == [("digits", "compute"), ("digits", "cache")]


def test_the_header_claims_no_stability_that_points_did_not_reach():
    """The issue: the header said 'stable within 15.0%' while 3 of 4 points were measured at 30%."""
    assert stability_summary(SWEEP) == (
        "windows asked to agree within 15%; 3 of 4 points did not get there and were measured with longer windows "
        "within 30% (column 'stable within')"
    )
    steady = _result(_point(1, 1540.0, 0.8), _point(2, 2900.0, 1.4))
    assert stability_summary(steady) == "every point stable within 15% (its windows agreed within it)"
    md = markdown(SWEEP)
    assert "stable within 15%." not in md and "stable within 15.0%" not in md
    assert "| digits | compute | 1 | c8 | 5104.0 |" in md
    row = next(line for line in md.splitlines() if line.startswith("| digits | compute | 1 | c8 | 5104.0 |"))
    assert row.rstrip(" |").endswith("30%")
    longer = markdown(_result(_point(1, 1540.0, 0.8, 30.0, window_ms=2000)))
    assert "| 30% (2000 ms windows) |" in longer


def test_the_report_leads_with_the_verdict_then_the_best_points():
    md = markdown(SWEEP, budget_ms=4.0).splitlines()
    assert md[0] == "# Performance report"
    assert md[2].startswith("- **digits (compute)**: best within p99 4 ms: 4100.0 infer/s at p99 3.10 ms")
    assert md[4] == (
        "Objective: the highest throughput with p99 within 4 ms. The first point is the spec's settings at the "
        "sweep's first batch size and load."
    )
    start = md.index("## Best points (top 5 per model and series)")
    top = md[start : md.index("", start + 2)]
    assert top[4].startswith("| digits | compute | 1 | 1 | c4 | 4100.0 |") and "+166%" in top[4]
    assert len([line for line in top if line.startswith("| digits | compute |")]) == 3  # c8 is over the budget


def test_void_points_show_no_number_and_say_why():
    result = _result(_point(1, 1540.0, 0.8), _point(4, 9000.0, 1.0).voided("3612 of 4200 requests answered by a cache"))
    md = markdown(result)
    assert "| digits | compute | 1 | c4 | VOID |" in md and "9000" not in md
    assert "## Points voided" in md and "- digits compute b1 c4: 3612 of 4200 requests answered by a cache" in md


def test_a_point_measured_again_says_so():
    again = _point(1, 1540.0, 0.8, note="voided once (1677 of 2177 requests answered by a cache); measured again")
    md = markdown(_result(again))
    assert "## Notes" in md and "- digits compute b1 c1: voided once (1677 of 2177 requests answered by a cache)" in md


def test_server_cpu_columns_where_the_server_was_read():
    cpu = {"cpu_pct": 183.4, "cpu_s": 11.0, "rss_peak_mb": 912.0, "cpu_ms_per_inference": 0.3512}
    md = markdown(_result(_point(1, 1540.0, 0.8, cpu=cpu)))
    assert "server CPU % | CPU ms/infer | server RSS MB" in md and "| 183 | 0.351 | 912 |" in md
    assert "Server CPU: the local tritonserver and its Python-backend stubs" in md
    remote = markdown(_result(_point(1, 1540.0, 0.8, cpu={"absent": "the server is not a local process (--url)"})))
    assert "server CPU %" not in remote and "Server CPU: not measured (the server is not a local process (--url))." in remote


def test_the_concurrency_axis_is_linear_with_integer_ticks():
    assert concurrency_ticks({1, 4}) == [1, 4]
    assert concurrency_ticks({1, 2, 4, 8, 16}) == [1, 2, 4, 8, 16]
    assert concurrency_ticks({1, 2, 4, 8, 16, 32, 64}) is None  # 1 and 2 would collide: whole-number ticks
    assert concurrency_ticks(set()) is None


def test_plots_are_drawn_with_a_linear_concurrency_axis_and_large_labels(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tritonforge.perf import report

    seen = {}
    save = plt.Figure.savefig

    def keep(fig, path, **kw):
        ax = fig.axes[0]
        seen[path.name] = (ax.get_xscale(), [t.get_text() for t in ax.get_xticklabels()], ax.get_yticklabels())
        return save(fig, path, **kw)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    paths = report.plots(SWEEP, tmp_path)
    assert [p.name for p in paths] == list(report.PLOTS)
    scale, labels, _ = seen["throughput_vs_concurrency.png"]
    assert scale == "linear" and labels == ["1", "2", "4", "8"]
    _, _, bars = seen["server_time_breakdown.png"]
    assert [t.get_text() for t in bars] == [f"digits compute b1 c{c}" for c in (1, 2, 4, 8)]  # the first on top
    assert [t.get_position()[1] for t in bars] == [3, 2, 1, 0]
    assert all(t.get_fontsize() >= report.LABEL_SIZE for t in bars)


def test_a_shadowed_models_points_show_what_they_compared_and_dropped():
    shadowed = _point(16, 900.0, 9.0, shadow={"compared": 412, "dropped": 3, "errors": 0})
    md = markdown(_result(shadowed, _point(1, 500.0, 2.0)))
    assert "| shadowed (dropped) |" in md and "| 412 (3) |" in md
    assert "compared with its FP32 reference off the request path" in md
    assert "shadowed" not in markdown(_result(_point(1, 500.0, 2.0)))
