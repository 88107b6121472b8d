"""The CLI's one vocabulary (tritonforge/cli/options.py): `--version`, `-h` everywhere, one meaning per option name,
perf_analyzer's range syntax and meaning, old spellings that still work with a notice, and addresses refused with
the reason instead of a traceback. Nothing here starts a server or perf_analyzer."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli import options
from tritonforge.cli.main import app
from tritonforge.cli.options import grpc_address, http_endpoint, metrics_endpoint
from tritonforge.cli.registry import COMMANDS

WIDE = {"COLUMNS": "250"}


def test_constants_the_help_names_are_perf_s_own():
    """The CLI names perf's choices without importing perf/ (so that `--help` stays fast); they must agree."""
    from tritonforge.cli.perf_commands import MEASUREMENT_MODES, perf
    from tritonforge.perf import analyzer, sweep

    assert tuple(sweep.SERIES) == options.SERIES and options.AUTO == sweep.AUTO
    assert MEASUREMENT_MODES == analyzer.MEASUREMENT_MODES
    derived = {f.name: f.default for f in dataclasses.fields(sweep.SweepPlan)}["input_count"]
    assert derived is None and inspect.signature(perf).parameters["input_count"].default is derived  # derived per point


def test_addresses():
    assert grpc_address("127.0.0.1:8001") == "127.0.0.1:8001" and grpc_address("[::1]:8001") == "[::1]:8001"
    for bad in ("http://127.0.0.1:8001", "grpc://h:8001", "127.0.0.1", "h:port", "h:0", ":8001"):
        with pytest.raises(typer.BadParameter, match="gRPC|host:port"):
            grpc_address(bad)
    assert http_endpoint("127.0.0.1:18000") == "http://127.0.0.1:18000"
    assert http_endpoint("https://h:8443") == "https://h:8443"
    for bad in ("ftp://h:8000", "http://", "h:x"):
        with pytest.raises(typer.BadParameter, match="HTTP endpoint"):
            http_endpoint(bad)
    # perf_analyzer's --metrics-url spelling (no scheme) and a bare host:port both reach /metrics
    assert metrics_endpoint("localhost:8002/metrics") == "http://localhost:8002/metrics"
    assert metrics_endpoint("localhost:8002") == "http://localhost:8002/metrics"
    assert metrics_endpoint("http://h:8002/metrics") == "http://h:8002/metrics"


class _Planned(Exception):
    pass


@pytest.fixture
def planned(monkeypatch):
    """perf's plan, caught before any server or perf_analyzer is needed."""
    from tritonforge.perf import sweep
    from tritonforge.repository.reader import Repository

    seen: dict = {}

    def plan(**kwargs):
        seen.update(kwargs)
        raise _Planned

    monkeypatch.setattr(sweep, "SweepPlan", plan)
    monkeypatch.setattr(Repository, "require", lambda self, model: None)  # no repository: the plan is what is tested
    monkeypatch.setattr(sweep, "plan_series", lambda repo, models, chosen: {m: [chosen] for m in models})
    return seen


@pytest.mark.parametrize(
    "args,concurrency,rates",
    [
        ([], [1, 2, 4, 8, 16], []),
        (["--concurrency", "1,4"], [1, 4], []),
        (["--concurrency-range", "1:16:2"], [1, 3, 5, 7, 9, 11, 13, 15], []),  # the README's raw example, same meaning
        (["--concurrency-range", "1:4"], [1, 2, 3, 4], []),
        (["--concurrency-range", "8"], [8], []),
        (["--request-rate", "50,100"], [], [50.0, 100.0]),
        (["--request-rate-range", "50:200:50"], [], [50.0, 100.0, 150.0, 200.0]),
    ],
)
def test_perf_load_options(planned, tmp_path, args, concurrency, rates):
    result = CliRunner().invoke(app, ["perf", "digits", "--repo", str(tmp_path), *args], env=WIDE)
    assert isinstance(result.exception, _Planned), result.output
    assert planned["concurrency"] == concurrency and planned["request_rates"] == rates


def test_old_spellings_still_work_with_a_notice(planned, tmp_path):
    runner = CliRunner()
    perf = runner.invoke(app, ["perf", "digits", "--repo", str(tmp_path), "--stability", "0"], env=WIDE)
    assert perf.exit_code == 2 and "Invalid value for '--stability-percentage'" in perf.output  # the value reached it
    assert "note: --stability is deprecated; use --stability-percentage" in perf.output
    inputs = runner.invoke(app, ["perf-inputs", "digits", "--repo", str(tmp_path), "--count=0"], env=WIDE)
    assert inputs.exit_code == 2 and "Invalid value for '--input-count'" in inputs.output
    assert "note: --count is deprecated; use --input-count" in inputs.output


def test_arguments_after_the_separator_are_never_renamed():
    from tritonforge.cli.registry import RenamingCommand

    small = typer.Typer()

    @small.command(
        cls=type("C", (RenamingCommand,), {"renamed": {"--count": "--input-count"}}),
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def run(ctx: typer.Context, input_count: int = 1) -> None:
        print(input_count, ctx.args)

    result = CliRunner().invoke(small, ["--count", "3", "--", "--count", "4"])
    assert result.exit_code == 0 and "3 ['--count', '4']" in result.output, result.output


def test_probe_takes_host_port_as_its_http_endpoint_and_refuses_a_grpc_url(monkeypatch, tmp_path):
    from tritonforge.server import probe

    asked = []
    monkeypatch.setattr(probe, "check", lambda repo, url, timeout: asked.append(url) or [])
    monkeypatch.setattr(probe, "public_models", lambda repo: ["digits"])
    runner = CliRunner()
    ok = runner.invoke(app, ["probe", "--repo", str(tmp_path), "--http-url", "127.0.0.1:18000"], env=WIDE)
    assert ok.exit_code == 0 and "ready: digits" in ok.output and asked == ["http://127.0.0.1:18000"]
    old = runner.invoke(app, ["probe", "--repo", str(tmp_path), "--url", "http://127.0.0.1:18000"], env=WIDE)
    assert old.exit_code == 0 and asked[-1] == "http://127.0.0.1:18000"
    assert "note: probe --url is deprecated; use --http-url" in old.output
    # the issue's `probe --url 127.0.0.1:18000`: one clear usage error, no URLError traceback
    grpc = runner.invoke(app, ["probe", "--repo", str(tmp_path), "--url", "127.0.0.1:18000"], env=WIDE)
    assert grpc.exit_code == 2 and "Invalid value for '--url'" in grpc.output and "--http-url" in grpc.output
    assert "Traceback" not in grpc.output and len(asked) == 2


def test_serve_takes_the_repository_as_argument_or_as_repo(monkeypatch, tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "a"), "--repo", str(tmp_path / "b")], env=WIDE)
    assert result.exit_code == 2 and "Invalid value for '--repo'" in result.output


def test_every_repo_option_says_whether_it_reads_or_writes():
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="tritonforge")
    for command in COMMANDS:
        params = {p.name: p for p in group.get_command(ctx, command.name).params}
        repo = next((p for p in params.values() if "--repo" in getattr(p, "opts", [])), None)
        if repo is None:
            continue
        assert repo.opts == ["--repo", "-r"] or sorted(repo.opts) == ["--repo", "-r"], command.name
        assert "write/read" not in repo.help and any(w in repo.help for w in ("read", "publish", "serve")), command.name
