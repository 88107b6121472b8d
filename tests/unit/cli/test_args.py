"""The CLI refuses bad option values before anything starts (no server, no perf_analyzer needed): a usage error
naming the option, exit code 2, and never a hang or a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.cli.options import int_list, perf_range

WIDE = {"COLUMNS": "250"}  # rich wraps the error box at the terminal's width

BAD_PERF_ARGS = [
    (["--concurrency", "1:16"], "--concurrency"),  # a list: the old doubling range is refused, naming both spellings
    (["--concurrency", "0,4"], "--concurrency"),
    (["--concurrency", "four"], "--concurrency"),
    (["--concurrency", ","], "--concurrency"),
    (["--concurrency-range", "0:16"], "--concurrency-range"),
    (["--concurrency-range", "16:1"], "--concurrency-range"),
    (["--concurrency-range", "1:16:0"], "--concurrency-range"),
    (["--concurrency-range", "4:0"], "--concurrency-range"),  # perf_analyzer's "up to --latency-threshold"
    (["--concurrency-range", "1:2:3:4"], "--concurrency-range"),
    (["--concurrency-range", "1,2"], "--concurrency-range"),
    (["--concurrency", "1,2", "--concurrency-range", "1:4"], "--concurrency-range"),  # one load option at most
    (["--concurrency-range", "1:4", "--request-rate", "50"], "--request-rate"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "1:8"], "--batch-size"),
    (["--request-rate", "fast"], "--request-rate"),
    (["--request-rate", "0,100"], "--request-rate"),
    (["--request-rate-range", "50:10"], "--request-rate-range"),
    (["--inputs", "random"], "--inputs"),
    (["--measurement-mode", "windows"], "--measurement-mode"),
    (["--max-trials", "0"], "--max-trials"),
    (["--input-count", "0"], "--input-count"),
    (["--stability-percentage", "0"], "--stability-percentage"),
    (["--url", "http://127.0.0.1:8001"], "--url"),
    (["--url", "127.0.0.1"], "--url"),
    (["-u", "127.0.0.1:http"], "--url"),
    (["--metrics-url", "ftp://h:8002"], "--metrics-url"),
    (["--metrics-url", "127.0.0.1:8002"], "--metrics-url"),  # without --url: the local server's are read
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
        (["--url", "grpc://127.0.0.1:8001"], "--url"),
    ],
)
def test_perf_search_refuses_a_bad_value_naming_the_option(args, option, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\n")  # never read: the options are checked first
    result = CliRunner().invoke(app, ["perf-search", str(spec), "--repo", str(tmp_path), *args], env=WIDE)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert spec.read_text() == "name: x\n"


def test_lists_and_perf_analyzer_ranges():
    assert int_list("1, 4,8", "--c") == [1, 4, 8]
    assert int_list("0,1000", "--delays", minimum=0) == [0, 1000]
    # perf_analyzer's --concurrency-range: linear, STEP 1 by default, END defaults to START
    assert perf_range("1:16", "--c") == list(range(1, 17))
    assert perf_range("1:16:2", "--c") == [1, 3, 5, 7, 9, 11, 13, 15]
    assert perf_range("4", "--c") == [4]
    assert perf_range("4:4", "--c") == [4]
    assert perf_range("50:200:50", "--r", integer=False) == [50.0, 100.0, 150.0, 200.0]
    assert perf_range("0.5:1.5:0.5", "--r", integer=False) == [0.5, 1.0, 1.5]
    assert perf_range("0.1:0.3:0.1", "--r", integer=False) == [0.1, 0.2, 0.3]  # no lost end to rounding


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
    from tritonforge.cli.registry import COMMANDS

    renamed = next(c for c in COMMANDS if c.name == "perf-search").renamed
    assert renamed == {"--write-back": "--apply", "--no-write-back": "--no-apply"}  # the old names still work, with a notice


def test_perf_search_s_proposal_names_the_spec_fields():
    from tritonforge.cli.perf_commands import _spec_fields
    from tritonforge.perf.config_search import Candidate

    text = _spec_fields(Candidate(1000, (4, 8), 2, 1))
    assert text == (
        "serving.dynamic_batching.enabled: true, serving.dynamic_batching.max_queue_delay_us: 1000, "
        "serving.dynamic_batching.preferred_batch_sizes: [4, 8], serving.instance_count: 2, serving.intra_op_threads: 1"
    )
