"""perf/: sweeps with the real perf_analyzer against the real local tritonserver, reports and plots, compare
mode, regression gate, interruption, clear errors, and the configuration search."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dataclasses import replace

import pytest
import tritonclient.grpc as grpcclient
import yaml

from tritonforge.build.pipeline import build
from tritonforge.repository.config import read_config
from tritonforge.build.spec import load_spec
from tritonforge.perf.analyzer import MeasureSettings, PerfAnalyzerError, check_binary, measure
from tritonforge.perf.config_search import (MAX_AUTO_CONCURRENCY, TRITON_DEFAULT, Candidate, apply, compute_models,
                                default_candidate, logic_models, restore, search, write_back)
from tritonforge.perf.inputs import model_samples, select, write_input_json
from tritonforge.perf.report import load_result
from tritonforge.perf.triton_stats import model_stats, stats_of
from tritonforge.perf.sweep import SweepPlan, run_sweep

from conftest import ROOT, digits_spec_copy
from tritonforge.repository.reader import Repository

pytestmark = pytest.mark.integration
FAST = ["--measurement-interval", "500", "--max-trials", "8", "--stability", "30"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonforge", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def sweep(digits_repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    proc = _cli("perf", "digits", "digits_ort", "--repo", str(digits_repo), "--concurrency", "1,4",
                "--baseline-model", "digits_ort", "--output-dir", str(out), *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def test_sweep_writes_report_json_and_readable_plots(sweep):
    out, proc = sweep
    result = load_result(out / "perf_report.json")
    assert [(p.model, p.concurrency) for p in result.points] == [
        ("digits", 1), ("digits", 4), ("digits_ort", 1), ("digits_ort", 4)]
    for p in result.points:
        assert p.throughput > 0 and 0 < p.p50_us <= p.p95_us <= p.p99_us
        assert p.server_compute_infer_us > 0
    for name in ("latency_vs_throughput.png", "throughput_vs_concurrency.png", "server_time_breakdown.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    md = (out / "perf_report.md").read_text()
    assert "| digits | 1 | c1 |" in md and "infer/s vs digits_ort" in md
    assert "perf_analyzer" in md and "AMD" in md or "cores" in md
    report = json.loads((out / "perf_report.json").read_text())
    ratios = {(r["model"], r["concurrency"]): r for r in report["ratios"]}
    assert set(ratios) == {("digits", 1), ("digits", 4)}
    assert ratios[("digits", 1)]["throughput"] > 0
    assert "digits" in proc.stdout and "infer/s" in proc.stdout


def test_regression_gate_passes_on_itself_and_fails_on_a_faster_baseline(sweep, digits_repo, tmp_path):
    out, _ = sweep
    report = json.loads((out / "perf_report.json").read_text())
    for p in report["points"]:
        p["throughput"] *= 0.5  # a slower past: this run is no regression
    (tmp_path / "slow.json").write_text(json.dumps(report))
    args = ["perf", "digits", "--repo", str(digits_repo), "--concurrency", "1", "--output-dir", str(tmp_path / "o"), *FAST]
    ok = _cli(*args, "--baseline", str(tmp_path / "slow.json"), "--max-p95-rise", "10")
    assert ok.returncode == 0 and "gate passed" in ok.stdout, ok.stdout + ok.stderr
    for p in report["points"]:
        p["throughput"] *= 100  # a past 50x faster than now: a regression
    (tmp_path / "fast.json").write_text(json.dumps(report))
    bad = _cli(*args, "--baseline", str(tmp_path / "fast.json"), "--max-p95-rise", "10")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "regression" in bad.stdout and "digits b1 c1: throughput" in bad.stdout and "gate failed" in bad.stdout
    unrelated = _cli("perf", "digits", "--repo", str(digits_repo), "--concurrency", "2", "--output-dir",
                     str(tmp_path / "u"), "--baseline", str(tmp_path / "fast.json"), *FAST)
    assert unrelated.returncode == 2 and "no point in common" in unrelated.stderr


def test_interrupted_sweep_keeps_finished_points(digits_server, digits_repo):
    plan = SweepPlan(models=["digits"], concurrency=[1, 2, 4, 8])
    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=400, max_trials=3, stability_pct=50)

    def ctrl_c_after_first(done, total, point, label):
        if done == 1 and point is not None:
            raise KeyboardInterrupt

    result = run_sweep(plan, settings, digits_repo, ctrl_c_after_first)
    assert result.interrupted and len(result.points) == 1 and result.points[0].concurrency == 1


def test_unique_and_repeated_inputs_drive_the_cache(digits_server, digits_repo):
    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=400, max_trials=3, stability_pct=50)
    rates = {}
    for mode in ("unique", "repeated"):
        result = run_sweep(SweepPlan(models=["digits"], concurrency=[1], inputs=mode, input_count=20000), settings,
                           digits_repo, metrics_url=digits_server.metrics_url)
        rates[mode] = result.points[0].cache_hit_rate
    assert rates["unique"] < 0.05 and rates["repeated"] > 0.9


def test_an_unstable_point_is_measured_again_with_inputs_never_sent(digits_server, digits_repo, tmp_path):
    """A stability target no real run meets: perf_analyzer refuses every attempt, and each further attempt
    asks for its own unique inputs (resent ones would all be cache hits)."""
    from tritonforge.perf.inputs import unique_inputs

    fresh = unique_inputs(model_samples(digits_repo, "digits"), 2000, tmp_path / "point.json")
    asked = []

    def data(attempt):
        asked.append(attempt)
        return fresh(attempt)

    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=100, max_trials=3,
                               stability_pct=0.001)
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
    assert len(data) == 2 and data[0]["image"]["shape"] == [64] and len(data[0]["image"]["content"]) == 64


def test_missing_or_failing_perf_analyzer_is_explained(digits_server, tmp_path):
    proc = _cli("perf", "digits", "--url", digits_server.grpc_url, env={"TRITONFORGE_PERF_ANALYZER": str(tmp_path / "nope")})
    assert proc.returncode == 2 and "pip install 'tritonclient[grpc]==2.50.0'" in proc.stderr
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


def test_config_search_picks_under_budget_and_writes_back(tmp_path, digits_spec):
    from tritonforge.server.process import LocalTritonServer

    spec = digits_spec_copy(tmp_path / "spec")
    spec.write_text("# my digits spec: keep this comment\n" + spec.read_text())
    repo = tmp_path / "repo"
    build(spec, repo)
    settings = MeasureSettings(url="", measurement_interval_ms=400, max_trials=3, stability_pct=50)
    with LocalTritonServer(repo) as server:
        settings = MeasureSettings(**{**settings.__dict__, "url": server.grpc_url})
        result = search(spec, repo, server.grpc_url, concurrency=4, budget_ms=1000,
                        candidates=[TRITON_DEFAULT, Candidate(0, (4, 8), 1, 0)], settings=settings)
        # the logic models' instance counts really change on the server, and come back
        admin = grpcclient.InferenceServerClient(server.grpc_url)
        logic = logic_models(repo, "digits")
        counts = lambda: {m: admin.get_model_config(m).config.instance_group[0].count for m in logic}  # noqa: E731
        assert sorted(logic) == ["digits_cache", "digits_router"] and set(counts().values()) == {1}
        apply(Candidate(0, (4, 8), 1, 0, logic_instances=3), repo, compute_models(repo, "digits"), admin, logic)
        assert set(counts().values()) == {3}
        restore(admin, repo, logic)
        assert set(counts().values()) == {1}
        admin.close()
    assert [t.candidate for t in result.trials[:3]] == [Candidate(200, (16, 64), 1, 0), TRITON_DEFAULT,
                                                         Candidate(0, (4, 8), 1, 0)]
    assert result.trials[0].default
    # then the grid's best again with two instances of the cache and the router
    grid_best = max(result.trials[:3], key=lambda t: t.point.throughput)
    assert result.trials[3].candidate == replace(grid_best.candidate, logic_instances=2)
    assert not result.trials[3].default and not result.trials[3].confirmation
    assert all(t.point is not None and t.point.throughput > 0 for t in result.trials)
    assert all(t.requests > 0 and t.computed == t.requests for t in result.trials)  # unique inputs: no hit
    assert result.best is not None and result.best.fits(1000)
    confirmations = [t for t in result.trials if t.confirmation]
    if result.best.candidate == result.default.candidate:
        assert not confirmations and result.confirmed is None
    else:  # pick and default measured again in pairs, the order alternating
        assert [t.default for t in confirmations] == [False, True, True, False, False, True]
        assert {t.candidate for t in confirmations} == {result.best.candidate, result.default.candidate}
        assert result.confirmed == all(r > 1 for r in result.pair_ratios())
    write_back(spec, Candidate(0, (4, 8), 2, 1, logic_instances=2))
    text = spec.read_text()
    assert text.startswith("# my digits spec: keep this comment")
    serving = yaml.safe_load(text)["serving"]
    assert serving["dynamic_batching"]["preferred_batch_sizes"] == [4, 8] and serving["instance_count"] == 2
    assert serving["cache"]["instance_count"] == 2 and serving["router"]["instance_count"] == 2
    build(spec, repo)
    cfg = read_config(repo / "digits_ort" / "config.pbtxt")
    assert cfg.instance_group[0].count == 2 and list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.parameters["intra_op_threads"].string_value == "1"
    for logic_model in ("digits_cache", "digits_router"):
        assert read_config(repo / logic_model / "config.pbtxt").instance_group[0].count == 2


def test_config_search_runs_at_the_highest_load_the_spec_s_settings_keep_within_budget(digits_server, digits_repo,
                                                                                        digits_spec):
    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=300, max_trials=3, stability_pct=50)
    candidate, default = Candidate(0, (), 1, 0), default_candidate(load_spec(digits_spec))
    result = search(digits_spec, digits_repo, digits_server.grpc_url, concurrency=None, budget_ms=1000,
                    candidates=[default], settings=settings, logic_instances=())
    # the spec's settings at 1, 2, 4, ... 64: all within a generous budget; nothing tried beyond 64
    assert [(t.candidate, t.concurrency) for t in result.probes] == [(default, c) for c in (1, 2, 4, 8, 16, 32, 64)]
    assert all(t.fits(1000) for t in result.probes) and result.concurrency == MAX_AUTO_CONCURRENCY
    assert [(t.candidate, t.concurrency) for t in result.trials if not t.probe] == [(default, 64)]
    assert result.best is result.default and not result.best.probe
    # a budget nothing keeps: the probe stops at the first load, the search runs there and picks nothing
    tight = search(digits_spec, digits_repo, digits_server.grpc_url, concurrency=None, budget_ms=0.001,
                   candidates=[candidate], settings=settings, logic_instances=())
    assert [t.concurrency for t in tight.probes] == [1] and tight.concurrency == 1 and tight.best is None
    assert [(t.candidate, t.concurrency) for t in tight.trials if not t.probe] == [(default, 1), (candidate, 1)]


def test_config_search_tries_its_best_at_twice_the_load_and_confirms_at_the_pick_s_load(digits_server, digits_repo,
                                                                                        digits_spec):
    settings = MeasureSettings(url=digits_server.grpc_url, measurement_interval_ms=300, max_trials=3, stability_pct=50)
    budget = 8.0  # digits: p95 about 2-3 ms at c1, 30 ms at c64 here
    candidates = [TRITON_DEFAULT, Candidate(0, (), 1, 0), Candidate(0, (4, 8, 16, 32, 64), 1, 0)]
    result = search(digits_spec, digits_repo, digits_server.grpc_url, concurrency=None, budget_ms=budget,
                    candidates=candidates, settings=settings, logic_instances=())
    load = result.concurrency
    assert [t.concurrency for t in result.probes] == [2 ** k for k in range(len(result.probes))]
    assert result.probes[-1].concurrency == 2 * load <= 64 and not result.probes[-1].fits(budget)
    assert all(t.fits(budget) for t in result.probes[:-1])
    grid_trials = [t for t in result.trials if not t.probe and t.concurrency == load and not t.confirmation]
    assert len(grid_trials) == 4 and grid_trials[0] is result.default
    # the best within the budget but the spec's settings (whose probe broke it there) again at twice the load
    ranked = sorted((t for t in grid_trials[1:] if t.fits(budget)), key=lambda t: t.point.throughput, reverse=True)
    higher = [t for t in result.trials if t.concurrency == 2 * load and not t.probe and not t.confirmation]
    assert [t.candidate for t in higher] == [t.candidate for t in ranked]
    # the pick: the most throughput within the budget over both loads (none, if noise put every trial over it)
    fitting = [t for t in grid_trials + higher if t.fits(budget)]
    assert result.best is (max(fitting, key=lambda t: t.point.throughput) if fitting else None)
    confirmations = [t for t in result.trials if t.confirmation]
    if result.best is None or result.best.candidate == result.default.candidate:
        assert not confirmations and result.confirmed is None
    else:  # both measured at the pick's load in every pair
        assert {t.concurrency for t in confirmations} == {result.best.concurrency} and len(confirmations) == 6
        assert result.confirmed == all(result.pick_wins(p, b) for p, b in result.pairs())


def test_miss_path_floor_puts_the_build_s_cache_and_router_in_front_of_a_zero_runner(digits_repo, tmp_path):
    import numpy as np
    import tritonclient.grpc as grpcclient

    from tritonforge.server.process import LocalTritonServer
    from benchmarks.miss_path_floor import TRITON_CACHE_BYTES, TRITON_CACHED_ROUTER, floor_repository

    entries = floor_repository(digits_repo, "digits", tmp_path / "repo")
    assert entries["runner"] == "digits_ort" and entries["cache"] == "digits_cache"
    for role in ("cache", "router"):  # the build's own serving logic, unchanged
        assert next((tmp_path / "repo" / entries[role]).glob("*/model.py")).read_bytes() == \
            Repository(digits_repo).file(entries[role], "model.py").read_bytes()
    out = read_config(digits_repo / "digits_ort" / "config.pbtxt").output[0]
    image = np.stack([s["image"] for s in model_samples(digits_repo, "digits_cache")[:3]])
    def successes(client):  # warm-up requests count too, so compare before and after
        return {m: s.success for m, s in stats_of(client, [entries["router"], entries["runner"]]).items()}

    def infer(client, name):
        request = grpcclient.InferInput("image", list(image.shape), "FP32")
        request.set_data_from_numpy(image)
        return client.infer(name, [request]).as_numpy(out.name)

    with LocalTritonServer(tmp_path / "repo", load_models=list(entries.values()), cache_size=TRITON_CACHE_BYTES) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        before = successes(client)
        for name in entries.values():
            result = infer(client, name)
            assert result.shape == (3, *out.dims) and not result.any(), name
        after = successes(client)
        assert not infer(client, TRITON_CACHED_ROUTER).any()  # the same input again: Triton's cache answers
        stats = model_stats(client, TRITON_CACHED_ROUTER)
        assert successes(client)[entries["runner"]] == after[entries["runner"]]
        client.close()
    assert stats.cache_hits == 1 and stats.cache_misses == 1
    # router: once directly and once by the cache (a miss); runner: directly, by both routers and the cache's
    # router, and by both relays
    assert after[entries["router"]] - before[entries["router"]] == 2
    assert after[entries["runner"]] - before[entries["runner"]] == 6
