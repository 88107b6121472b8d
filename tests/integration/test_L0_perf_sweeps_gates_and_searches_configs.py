"""perf/: sweeps with the real perf_analyzer against the real local tritonserver, reports and plots, compare
mode, regression gate, interruption, clear errors, and the configuration search."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from helpers import ROOT, digits_spec_copy

from tritonforge.builder.pipeline import build
from tritonforge.perf.analyzer import MeasureSettings, PerfAnalyzerError, check_binary, measure
from tritonforge.perf.config_search import (
    MAX_AUTO_CONCURRENCY,
    TRITON_DEFAULT,
    Candidate,
    apply,
    default_candidate,
    restore,
    search,
    tuned_models,
    write_back,
)
from tritonforge.perf.inputs import model_samples, select, write_input_json
from tritonforge.perf.report import load_result
from tritonforge.perf.sweep import SweepPlan, run_sweep
from tritonforge.repository.config import read_config
from tritonforge.spec import load_spec

pytestmark = pytest.mark.integration
FAST = ["--measurement-interval", "500", "--max-trials", "8", "--stability-percentage", "30"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonforge", *args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def sweep(digits_repo, digits_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    proc = _cli(
        "perf",
        "digits",
        "digits_ort",
        "--repo",
        str(digits_repo),
        "--url",
        digits_server.grpc_url,
        "--metrics-url",
        digits_server.metrics_url,
        "--concurrency",
        "1,4",
        "--inputs",
        "auto",
        "--baseline-model",
        "digits_ort",
        "--output-dir",
        str(out),
        *FAST,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def test_sweep_writes_report_json_and_readable_plots(sweep):
    out, proc = sweep
    result = load_result(out / "perf_report.json")
    # with --inputs auto a model with a response cache is measured twice, labelled: compute (unique inputs) and cache
    assert [(p.model, p.label, p.concurrency) for p in result.points] == [
        ("digits", "compute", 1),
        ("digits", "compute", 4),
        ("digits", "cache", 1),
        ("digits", "cache", 4),
        ("digits_ort", "compute", 1),
        ("digits_ort", "compute", 4),
    ]
    for p in result.points:
        assert p.throughput > 0 and 0 < p.p50_us <= p.p95_us <= p.p99_us
    rates = {(p.label, p.concurrency): p.cache_hit_rate for p in result.points if p.model == "digits"}
    assert all(rates[("compute", c)] < 0.05 and rates[("cache", c)] > 0.9 for c in (1, 4)), rates
    for name in ("latency_vs_throughput.png", "throughput_vs_concurrency.png", "server_time_breakdown.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    md = (out / "perf_report.md").read_text()
    assert "| digits | compute | 1 | c1 |" in md and "| digits | cache | 1 | c1 |" in md and "infer/s vs digits_ort" in md
    assert "perf_analyzer" in md and "cores" in md
    report = json.loads((out / "perf_report.json").read_text())
    ratios = {(r["model"], r["concurrency"]): r for r in report["ratios"]}
    assert set(ratios) == {("digits", 1), ("digits", 4)}
    assert ratios[("digits", 1)]["throughput"] > 0
    assert "digits" in proc.stdout and "infer/s" in proc.stdout


def test_regression_gate_passes_on_itself_and_fails_on_a_faster_baseline(sweep, digits_repo, digits_server, tmp_path):
    out, _ = sweep
    report = json.loads((out / "perf_report.json").read_text())
    for p in report["points"]:
        p["throughput"] *= 0.5  # a slower past: this run is no regression
    (tmp_path / "slow.json").write_text(json.dumps(report))
    args = [
        "perf",
        "digits",
        "--repo",
        str(digits_repo),
        "--url",
        digits_server.grpc_url,
        "--concurrency",
        "1",
        "--inputs",
        "compute",
        "--output-dir",
        str(tmp_path / "o"),
        *FAST,
    ]
    ok = _cli(*args, "--baseline", str(tmp_path / "slow.json"), "--max-p95-rise", "10")
    assert ok.returncode == 0 and "gate passed" in ok.stdout, ok.stdout + ok.stderr
    for p in report["points"]:
        p["throughput"] *= 100  # a past 50x faster than now: a regression
    (tmp_path / "fast.json").write_text(json.dumps(report))
    bad = _cli(*args, "--baseline", str(tmp_path / "fast.json"), "--max-p95-rise", "10")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "regression" in bad.stdout and "digits compute b1 c1: throughput" in bad.stdout and "gate failed" in bad.stdout
    unrelated = _cli(
        "perf",
        "digits",
        "--repo",
        str(digits_repo),
        "--url",
        digits_server.grpc_url,
        "--concurrency",
        "2",
        "--inputs",
        "compute",
        "--output-dir",
        str(tmp_path / "u"),
        "--baseline",
        str(tmp_path / "fast.json"),
        *FAST,
    )
    assert unrelated.returncode == 2 and "no point in common" in unrelated.stderr


def test_interrupted_sweep_keeps_finished_points(digits_server, digits_repo):
    plan = SweepPlan(models=["digits"], concurrency=[1, 2, 4, 8])
    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=400, max_trials=3, stability_pct=50)

    def ctrl_c_after_first(done, total, point, label):
        if done == 1 and point is not None:
            raise KeyboardInterrupt

    result = run_sweep(plan, settings, digits_repo, ctrl_c_after_first)
    assert result.interrupted and len(result.points) == 1 and result.points[0].concurrency == 1


def test_a_point_that_fails_twice_is_kept_as_failed_and_the_sweep_goes_on(digits_server, digits_repo, tmp_path):
    """Batch 128 exceeds digits' max_batch_size 64: perf_analyzer refuses that point on every attempt, by
    construction. The point before and the point after it are measured; report, JSON and plots are written."""
    from tritonforge.perf.report import write_report

    plan = SweepPlan(models=["digits"], batch_sizes=[1, 128, 2], concurrency=[1])
    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=300, max_trials=3, stability_pct=50)
    result = run_sweep(plan, settings, digits_repo)
    assert [(p.batch_size, p.ok) for p in result.points] == [(1, True), (128, False), (2, True)]
    failed = result.points[1]
    assert not failed.ok and "perf_analyzer" in failed.error and failed.throughput == 0
    files = write_report(result, tmp_path)
    md = files["markdown"].read_text()
    assert "| digits | compute | 128 | c1 | FAILED |" in md and "## Points that could not be measured" in md
    saved = load_result(tmp_path / "perf_report.json")
    assert [p.ok for p in saved.points] == [True, False, True] and saved.points[1].error == failed.error
    assert (tmp_path / "latency_vs_throughput.png").is_file()


def test_an_unstable_point_is_measured_again_with_inputs_never_sent(digits_server, digits_repo, tmp_path):
    """A stability target no real run meets: perf_analyzer refuses every attempt, and each further attempt
    asks for its own unique inputs (resent ones would all be cache hits)."""
    from tritonforge.perf.inputs import UniqueInputs

    fresh = UniqueInputs(model_samples(digits_repo, "digits"), 2000, tmp_path / "point.json")
    asked = []

    def data(attempt):
        asked.append(attempt)
        return fresh(attempt)

    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=100, max_trials=3, stability_pct=0.001)
    with pytest.raises(PerfAnalyzerError, match="stable measurement"):
        measure("digits", settings, 1, 2, None, data)
    assert asked == [0, 1, 2]
    assert len({fresh(a) for a in asked}) == 3


def test_input_data_comes_from_the_build(digits_repo, tmp_path):
    samples = model_samples(digits_repo, "digits")
    assert len(samples) == 540 and samples[0]["image"].shape == (64,)
    unique = select(samples, "unique", 1200)
    assert len({s["image"].tobytes() for s in unique}) == 1200
    assert not {s["image"].tobytes() for s in unique} & {s["image"].tobytes() for s in samples}
    assert max(abs(u["image"] - samples[i % 540]["image"]).max() for i, u in enumerate(unique)) < 1e-5
    path = write_input_json(select(samples, "repeated", 2), tmp_path / "d.json")
    data = json.loads(path.read_text())["data"]
    assert len(data) == 2 and data[0]["image"]["shape"] == [64]
    sent = np.frombuffer(base64.b64decode(data[0]["image"]["content"]["b64"]), "<f4")  # what perf_analyzer decodes
    assert sent.tolist() == samples[0]["image"].tolist()


def test_perf_inputs_writes_what_raw_perf_analyzer_reads(digits_server, digits_repo, tmp_path):
    """The raw tool path a user already knows: perf-inputs writes --input-data and prints the command;
    perf-analyzer runs the bundled binary with its library path, as printed."""
    data = tmp_path / "data.json"
    proc = _cli(
        "perf-inputs", "digits", "--repo", str(digits_repo), "-o", str(data), "--inputs", "compute", "--input-count", "300"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote 300 requests (compute) to {data}" in proc.stdout
    assert len({json.dumps(d["image"]["content"]) for d in json.loads(data.read_text())["data"]}) == 300
    printed = next(line for line in proc.stdout.splitlines() if line.startswith("tritonforge perf-analyzer -- "))
    args = printed.split(" -- ", 1)[1].split()
    args[args.index("-u") + 1] = digits_server.grpc_url
    args[args.index("--concurrency-range") + 1] = "1"
    run = _cli("perf-analyzer", "--", *args, "--measurement-interval", "300", "--stability-percentage", "50")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Throughput:" in run.stdout and "Concurrency: 1" in run.stdout


def test_missing_or_failing_perf_analyzer_is_explained(digits_server, digits_repo, tmp_path):
    proc = _cli(
        "perf",
        "digits",
        "--url",
        digits_server.grpc_url,
        "--repo",
        str(digits_repo),
        env={"TRITONFORGE_PERF_ANALYZER": str(tmp_path / "nope")},
    )
    assert (
        proc.returncode == 2 and "tritonforge serving-env makes it" in proc.stderr and "TRITONFORGE_PERF_ANALYZER" in proc.stderr
    )
    fake = tmp_path / "perf_analyzer"
    fake.write_text("#!/bin/sh\necho 'error while loading shared libraries: libb64.so.0d' >&2\nexit 127\n")
    fake.chmod(0o755)
    with pytest.raises(PerfAnalyzerError, match="apt-get install libb64-0d"):
        os.environ["TRITONFORGE_PERF_ANALYZER"] = str(fake)
        try:
            check_binary()
        finally:
            del os.environ["TRITONFORGE_PERF_ANALYZER"]
    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=300, max_trials=2)
    with pytest.raises(PerfAnalyzerError, match="perf_analyzer failed on model 'no_such_model'"):
        measure("no_such_model", settings, 1, 1)


def test_config_search_probes_the_load_picks_within_budget_and_writes_back(tmp_path, digits_repo):
    """One search with the real perf_analyzer: the spec's settings at 1, 2, 4, ... concurrent requests until p95
    leaves the budget, the candidates there (and the best again at twice the load), the pick exactly the fastest
    trial within the budget, confirmed in pairs or not; then the pick written into the spec, comments kept."""
    from tritonforge.server.process import LocalTritonServer

    spec = digits_spec_copy(tmp_path / "spec")
    spec.write_text("# my digits spec: keep this comment\n" + spec.read_text())
    repo = tmp_path / "repo"
    shutil.copytree(digits_repo, repo, symlinks=True)  # the build of this spec (the search changes configs)
    budget = 3.0  # digits: p95 about 1 ms at c1 here, over 3 ms by c16 (fewer probes: a shorter test)
    candidates = [TRITON_DEFAULT, Candidate(0, (4, 8), 2, 1)]
    with LocalTritonServer(repo) as server:
        settings = MeasureSettings(url=server.grpc_url, measurement_interval_ms=300, max_trials=3, stability_pct=50)
        result = search(
            spec,
            repo,
            server.grpc_url,
            concurrency=None,
            budget_ms=budget,
            candidates=candidates,
            settings=settings,
            metrics_url=server.metrics_url,
        )
        # the candidates' settings really reach the server, and come back afterwards
        admin = grpcclient.InferenceServerClient(server.grpc_url)
        count = lambda: admin.get_model_config("digits").config.instance_group[0].count  # noqa: E731
        apply(Candidate(0, (4, 8), 3, 1), repo, tuned_models(repo, "digits"), admin)
        assert count() == 3
        restore(admin, repo, tuned_models(repo, "digits"))
        assert count() == 1
        admin.close()
    default = default_candidate(load_spec(spec))
    load = result.concurrency
    assert [t.concurrency for t in result.probes] == [2**k for k in range(len(result.probes))]
    assert all(t.candidate == default for t in result.probes)
    if result.probes[-1].concurrency < MAX_AUTO_CONCURRENCY:
        assert not result.probes[-1].fits(budget) and all(t.fits(budget) for t in result.probes[:-1])
    grid = [t for t in result.trials if not t.probe and t.concurrency == load and not t.confirmation]
    assert [t.candidate for t in grid] == [default, *candidates] and grid[0] is result.default
    assert all(t.requests > 0 and t.computed == t.requests for t in grid)  # unique inputs: no cache hit
    higher = [t for t in result.trials if t.concurrency == 2 * load and not t.probe and not t.confirmation]
    ranked = sorted((t for t in grid[1:] if t.fits(budget)), key=lambda t: t.point.throughput, reverse=True)
    if result.probes[-1].concurrency == 2 * load:
        assert [t.candidate for t in higher] == [t.candidate for t in ranked]
    fitting = [t for t in grid + higher if t.fits(budget)]
    assert result.best is (max(fitting, key=lambda t: t.point.throughput) if fitting else None)
    confirmations = [t for t in result.trials if t.confirmation]
    if result.best is None or result.best.candidate == default:
        assert not confirmations and result.confirmed is None
    else:  # pick and default again in pairs at the pick's load, the order alternating
        assert [t.default for t in confirmations] == [False, True, True, False, False, True]
        assert {t.concurrency for t in confirmations} == {result.best.concurrency}
        assert result.confirmed == all(result.pick_wins(p, b) for p, b in result.pairs())
    write_back(spec, Candidate(0, (4, 8), 2, 1))
    text = spec.read_text()
    assert text.startswith("# my digits spec: keep this comment")
    serving = yaml.safe_load(text)["serving"]
    assert serving["dynamic_batching"]["preferred_batch_sizes"] == [4, 8] and serving["instance_count"] == 2
    build(spec, repo)
    cfg = read_config(repo / "digits" / "config.pbtxt")
    assert cfg.instance_group[0].count == 2 and list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert json.loads(cfg.parameters["tritonforge"].string_value)["intra_op_threads"] == 1
