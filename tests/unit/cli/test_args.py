"""The CLI refuses bad option values before anything starts (no server, no perf_analyzer needed): a usage error
naming the option, exit code 2, and never a hang or a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.cli.perf_commands import _ints

WIDE = {"COLUMNS": "250"}  # rich wraps the error box at the terminal's width

BAD_PERF_ARGS = [
    (["--concurrency", "0:16"], "--concurrency"),  # doubling from 0 used to loop for ever
    (["--concurrency", "16:1"], "--concurrency"),
    (["--concurrency", "four"], "--concurrency"),
    (["--concurrency", ","], "--concurrency"),
    (["--batch-size", "0"], "--batch-size"),
    (["--request-rate", "fast"], "--request-rate"),
    (["--request-rate", "0,100"], "--request-rate"),
    (["--inputs", "random"], "--inputs"),
    (["--measurement-mode", "windows"], "--measurement-mode"),
    (["--max-trials", "0"], "--max-trials"),
    (["--input-count", "0"], "--input-count"),
    (["--stability", "0"], "--stability"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args,option", BAD_PERF_ARGS)
def test_perf_refuses_a_bad_value_naming_the_option(args, option, tmp_path):
    result = CliRunner().invoke(
        app, ["perf", "digits", "--repo", str(tmp_path), "--output-dir", str(tmp_path / "o"), *args], env=WIDE
    )
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "o").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args,option",
    [
        (["--delays", "0:4000"], "--delays"),
        (["--delays", "-5"], "--delays"),
        (["--instances", "0"], "--instances"),
        (["--concurrency", "0"], "--concurrency"),
        (["--concurrency", "4,8"], "--concurrency"),
        (["--concurrency", "fast"], "--concurrency"),
        (["--latency-budget-ms", "0"], "--latency-budget-ms"),
    ],
)
def test_perf_search_refuses_a_bad_value_naming_the_option(args, option, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\n")  # never read: the options are checked first
    result = CliRunner().invoke(app, ["perf-search", str(spec), "--repo", str(tmp_path), *args], env=WIDE)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert spec.read_text() == "name: x\n"


def test_ints_reads_lists_and_doubling_ranges():
    assert _ints("1:16", "--c") == [1, 2, 4, 8, 16]
    assert _ints("3:20", "--c") == [3, 6, 12]
    assert _ints("1, 4,8", "--c") == [1, 4, 8]
    assert _ints("0,1000", "--delays", minimum=0) == [0, 1000]


@pytest.mark.parametrize(
    "args,option",
    [(["--grpc-port", "0"], "--grpc-port"), (["--http-port", "70000"], "--http-port"), (["--cache-size", "-1"], "--cache-size")],
)
def test_serve_refuses_a_bad_value_naming_the_option(args, option, tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path), *args], env=WIDE)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output


def test_perf_search_proposes_and_writes_back_only_with_apply():
    import typer

    command = typer.main.get_command(app).commands["perf-search"]  # type: ignore[attr-defined]
    param = next(p for p in command.params if "--apply" in p.opts)
    assert param.default is False and "--no-apply" in param.secondary_opts
    assert "--write-back" in param.opts and "--no-write-back" in param.secondary_opts  # the old names still work


def test_perf_search_s_proposal_names_the_spec_fields():
    from tritonforge.cli.perf_commands import _spec_fields
    from tritonforge.perf.config_search import Candidate

    text = _spec_fields(Candidate(1000, (4, 8), 2, 1))
    assert text == (
        "serving.dynamic_batching.enabled: true, serving.dynamic_batching.max_queue_delay_us: 1000, "
        "serving.dynamic_batching.preferred_batch_sizes: [4, 8], serving.instance_count: 2, serving.intra_op_threads: 1"
    )
