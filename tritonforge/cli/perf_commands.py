"""`tritonforge perf` and `tritonforge perf-search`: parse, call perf/, render."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Literal, get_args

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tritonforge.cli.options import (
    DEFAULT_REPO,
    SERIES_HELP,
    CacheSizeOption,
    MetricsUrlOption,
    Series,
    SeriesOrAuto,
    int_list,
    metrics_endpoint,
    number_list,
    one_of,
    perf_range,
    repo_option,
    url_option,
)
from tritonforge.cli.render import console
from tritonforge.errors import TritonforgeError

DEFAULT_INPUT_COUNT = 20000
InputCountOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="requests the input data holds (perf_analyzer's --input-data; perf: per point): compute: all "
        "different, more than one point sends; cache: repeats of a few; validation: at most the stored samples",
    ),
]


def _metrics_need_url(metrics_url: str | None, url: str | None) -> None:
    if metrics_url and not url:
        raise typer.BadParameter(
            "goes with --url (a running server's metrics); the local server's are read without it", param_hint="'--metrics-url'"
        )


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise typer.BadParameter(f"{value:g}: expected a number above 0", param_hint=f"'{option}'")
    return value


_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
}


def _size(text: str, option: str) -> int:
    """'256MiB', '1GB', '500000' -> bytes (above 0); a usage error naming `option` otherwise."""
    import re

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise typer.BadParameter(f"{text!r}: expected a size in bytes, as '256MiB', '1GB' or '500000'", param_hint=f"'{option}'")
    return int(float(match.group(1)) * _UNITS[unit])


MeasurementMode = Literal["time_windows", "count_windows"]
MEASUREMENT_MODES = get_args(MeasurementMode)  # tritonforge.perf.analyzer's (a unit test keeps them equal)
DEFAULT_CONCURRENCY = "1,2,4,8,16"


def _loads(ctx: typer.Context, concurrency: str, concurrency_range: str | None, request_rate: str | None, rate_range: str | None):
    """(concurrency levels, request rates) from the one load option given; `--concurrency 1,2,4,8,16` if none."""
    option, text = one_of(
        {
            "--concurrency": concurrency,
            "--concurrency-range": concurrency_range,
            "--request-rate": request_rate,
            "--request-rate-range": rate_range,
        },
        ctx,
        "--concurrency",
    )
    if option == "--concurrency" and ":" in text:
        lo, _, hi = text.partition(":")
        doubling = ""
        with contextlib.suppress(ValueError):
            levels: list[str] = []
            level = max(int(lo), 1)
            while level <= int(hi) and len(levels) < 32:
                levels.append(str(level))
                level *= 2
            doubling = f" (its old meaning, doubling from LOW to HIGH, is --concurrency {','.join(levels)})" if levels else ""
        raise typer.BadParameter(
            f"{text!r}: --concurrency takes a list, as '1,2,4,8,16'; a range is --concurrency-range "
            f"START:END[:STEP], linear as perf_analyzer's{doubling}",
            param_hint="'--concurrency'",
        )
    if option == "--concurrency":
        return int_list(text, option), []
    if option == "--concurrency-range":
        return perf_range(text, option), []
    if option == "--request-rate":
        return [], number_list(text, option)
    return [], perf_range(text, option, integer=False)


@contextlib.contextmanager
def _server(url: str | None, repo: Path, models: list[str], cache_size: int | None = None, metrics_url: str | None = None):
    """(gRPC url, metrics url, pid or None) of the server to measure: the one at `url`, or the local one started
    on `repo` (its pid: perf reads its CPU time)."""
    if url:
        from tritonforge.server.reach import require_server

        require_server(url)
        yield url, metrics_url, None
        return
    from tritonforge.server.process import LocalTritonServer

    with console.status(f"starting the local tritonserver on {repo}"):
        server = LocalTritonServer(repo, load_models=models, cache_size=cache_size).start()
    try:
        yield server.grpc_url, server.metrics_url, server.process.pid if server.process else None
    finally:
        server.stop()
        server.cleanup()


def _points_table(points) -> Table:
    table = Table(title="measured", title_justify="left")
    for col in (
        "model",
        "series",
        "batch",
        "load",
        "infer/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "queue ms",
        "infer ms",
        "cache hits",
        "stable within",
        "server CPU",
    ):
        table.add_column(col)
    for p in points:
        load = f"c{p.concurrency}" if p.concurrency is not None else f"r{p.request_rate:g}/s"
        if not p.ok:
            status = "[red]failed[/]" if p.error else "[yellow]void[/]"
            table.add_row(p.model, p.label, str(p.batch_size), load, status, *["-"] * 8)
            continue
        cpu = p.cpu.get("cpu_pct")
        table.add_row(
            p.model,
            p.label,
            str(p.batch_size),
            load,
            f"{p.throughput:.1f}",
            f"{p.p50_us / 1000:.2f}",
            f"{p.p95_us / 1000:.2f}",
            f"{p.p99_us / 1000:.2f}",
            f"{p.server_queue_us / 1000:.2f}",
            f"{p.server_compute_infer_us / 1000:.2f}",
            "-" if p.cache_hit_rate is None else f"{p.cache_hit_rate:.0%}",
            "-" if p.stability_pct is None else f"{p.stability_pct:g}%",
            "-" if cpu is None else f"{cpu:.0f}%",
        )
    return table


def perf(
    ctx: typer.Context,
    models: Annotated[list[str], typer.Argument(help="models to measure (several: compared side by side)")],
    url: Annotated[
        str | None, url_option("a running server's gRPC address, host:port (default: start the local server on --repo)")
    ] = None,
    metrics_url: MetricsUrlOption = None,
    repo: Annotated[
        Path,
        repo_option("model repository to read: the models' input data (and, without --url, the one the local server serves)"),
    ] = DEFAULT_REPO,
    batch_size: Annotated[str, typer.Option(help="batch sizes, a list: '1,8' (perf_analyzer's -b, one per point)")] = "1",
    concurrency: Annotated[
        str,
        typer.Option(
            help="concurrency levels, a list: '1,2,4,8,16'; or give --concurrency-range, --request-rate or "
            "--request-rate-range instead"
        ),
    ] = DEFAULT_CONCURRENCY,
    concurrency_range: Annotated[
        str | None,
        typer.Option(
            help="concurrency levels as perf_analyzer's --concurrency-range START[:END[:STEP]]: START to END in steps "
            "of STEP (default 1): '1:16:2' is 1,3,...,15, '1:16' all sixteen"
        ),
    ] = None,
    request_rate: Annotated[
        str | None, typer.Option(help="request rates per second instead of concurrency, a list: '50,100'")
    ] = None,
    request_rate_range: Annotated[
        str | None,
        typer.Option(
            help="request rates per second as perf_analyzer's --request-rate-range START[:END[:STEP]]: '50:200:50' "
            "is 50,100,150,200"
        ),
    ] = None,
    measurement_mode: Annotated[MeasurementMode, typer.Option(help="as perf_analyzer's --measurement-mode")] = "time_windows",
    measurement_interval: Annotated[
        int,
        typer.Option(
            min=1,
            help="window length in ms (time_windows), as perf_analyzer's --measurement-interval (whose default is "
            "5000: 1000 here, so a sweep of many points ends in minutes)",
        ),
    ] = 1000,
    stability_percentage: Annotated[
        float,
        typer.Option(
            help="the last 3 windows must agree within this percentage, as perf_analyzer's --stability-percentage "
            "(whose default is 10: 15 here, for its shorter windows; a point that never agrees is measured again "
            "with windows twice as long within twice the percentage, twice at most)",
        ),
    ] = 15.0,
    max_trials: Annotated[
        int,
        typer.Option(
            min=1, help="windows per point at most, as perf_analyzer's --max-trials (whose default is 10: 6 here, with retries)"
        ),
    ] = 6,
    inputs: Annotated[
        SeriesOrAuto,
        typer.Option(
            help=f"the input data: one series for all models (default compute: what the model computes, no cache "
            f"hit); auto: compute, and a cache series too for models with a response cache (twice the points). "
            f"{SERIES_HELP}",
        ),
    ] = "compute",
    input_count: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="requests in each point's input file (default: compute: what the point may send, from its windows "
            "and the throughput of the points before it; validation: every stored sample)",
        ),
    ] = None,
    max_input_bytes: Annotated[
        str, typer.Option(help="bound on each input file (base64 numbers), as '256MiB' or '1GB'")
    ] = "256MiB",
    p99_budget_ms: Annotated[
        float | None,
        typer.Option(help="verdict: the best point is the highest throughput with p99 within this (default: the highest)"),
    ] = None,
    baseline_model: Annotated[str | None, typer.Option(help="report ratios against this model")] = None,
    output_dir: Annotated[
        Path, typer.Option(help="directory to write perf_report.md, perf_report.json and the plots into")
    ] = Path("perf_results"),
    baseline: Annotated[Path | None, typer.Option(help="regression gate: compare with this perf_report.json")] = None,
    max_throughput_drop: Annotated[float, typer.Option(min=0.0, help="gate: allowed throughput drop (fraction)")] = 0.10,
    max_p95_rise: Annotated[float, typer.Option(min=0.0, help="gate: allowed p95 rise (fraction)")] = 0.20,
    save_baseline: Annotated[Path | None, typer.Option(help="file to copy perf_report.json to, as a future --baseline")] = None,
    cache_size: CacheSizeOption = None,
) -> None:
    """Sweep MODELS with the real perf_analyzer; write perf_report.md/.json and plots; optionally gate on a baseline."""
    from tritonforge.perf.analyzer import MeasureSettings, check_binary
    from tritonforge.perf.regression import compare
    from tritonforge.perf.report import load_result, verdict_lines, write_report
    from tritonforge.perf.sweep import SweepPlan, check_inputs, plan_series, run_sweep

    batches = int_list(batch_size, "--batch-size")
    loads, rates = _loads(ctx, concurrency, concurrency_range, request_rate, request_rate_range)
    _positive(stability_percentage, "--stability-percentage")
    if p99_budget_ms is not None:
        _positive(p99_budget_ms, "--p99-budget-ms")
    _metrics_need_url(metrics_url, url)
    from tritonforge.repository.reader import Repository

    repository = Repository(repo)
    for model in models:  # the repository holds the input data, with --url too
        repository.require(model)
    plan = SweepPlan(
        models=models,
        batch_sizes=batches,
        concurrency=loads,
        request_rates=rates,
        series=plan_series(repo, models, inputs),
        input_count=input_count,
        max_input_bytes=_size(max_input_bytes, "--max-input-bytes"),
    )
    check_inputs(plan, repo)
    check_binary()
    base = load_result(baseline) if baseline else None
    with _server(url, repo, models, cache_size, metrics_url) as (grpc_url, metrics, pid):
        settings = MeasureSettings(
            url=grpc_url,
            measurement_mode=measurement_mode,
            measurement_interval_ms=measurement_interval,
            stability_pct=stability_percentage,
            max_trials=max_trials,
        )
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("perf_analyzer", total=len(plan.points()))

            def on_point(done, total, point, label):
                progress.update(task, completed=done, description=f"perf_analyzer {label}")

            result = run_sweep(plan, settings, repo, on_point, metrics, pid)
    written = write_report(result, output_dir, baseline_model, p99_budget_ms)
    console.print(_points_table(result.points))
    for line in verdict_lines(result, p99_budget_ms):
        console.print(line, markup=False, soft_wrap=True)
    if result.interrupted:
        console.print(f"[yellow]interrupted[/]: kept {len(result.points)} finished point(s)")
    for p in result.points:
        if not p.ok:
            why = f"void: {p.void}" if p.void else f"failed: {p.error.splitlines()[-1] if p.error else ''}"
            console.print(f"{p.model} {p.label} b{p.batch_size} c{p.concurrency}: {why}", markup=False)
    console.print("wrote " + ", ".join(str(p) for p in written.values()))
    if save_baseline:
        save_baseline.write_text(written["json"].read_text())
        console.print(f"baseline saved to {save_baseline}")
    if base is not None:
        gate = compare(result, base, max_throughput_drop, max_p95_rise)
        for change in gate.regressions:
            console.print(f"[red]regression[/] {change.describe()}", markup=True)
        if not gate.passed:
            console.print(f"[red]gate failed[/]: {len(gate.regressions)} regression(s) in {gate.compared} compared point(s)")
            raise typer.Exit(1)
        console.print(
            f"[green]gate passed[/]: {gate.compared} point(s) within -{max_throughput_drop:.0%} "
            f"throughput / +{max_p95_rise:.0%} p95 of the baseline"
        )


def perf_search(
    spec: Annotated[Path, typer.Argument(help="build spec of the model to tune")],
    repo: Annotated[
        Path,
        repo_option(
            "model repository to read (the one the local server serves, without --url) and, with --write-back, "
            "to rebuild the pick into"
        ),
    ] = DEFAULT_REPO,
    url: Annotated[
        str | None,
        url_option(
            "a running server's gRPC address, host:port, in explicit model control mode (default: start the local "
            "server on --repo)"
        ),
    ] = None,
    metrics_url: MetricsUrlOption = None,
    concurrency: Annotated[
        str,
        typer.Option(
            help="the one concurrency level of every trial; auto: the highest of 1, 2, 4, ... 64 at which the spec's "
            "settings keep p95 within the budget"
        ),
    ] = "auto",
    latency_budget_ms: Annotated[float, typer.Option(help="p95 must stay within this")] = 50.0,
    delays: Annotated[str, typer.Option(help="max queue delays to try (us), a list")] = "0,1000,4000",
    instances: Annotated[str, typer.Option(help="instance counts of the compute models to try, a list")] = "1,2",
    apply: Annotated[
        bool,
        typer.Option(
            "--apply/--no-apply",
            help="write the confirmed pick into the spec (comments kept) and rebuild; default: only propose it",
        ),
    ] = False,
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON file to write, with every trial")] = Path(
        "perf_results/config_search.json"
    ),
) -> None:
    """Try dynamic batching settings and instance counts on a running model, pick the best under a latency budget
    and propose it; --apply writes it into the spec and rebuilds."""
    from tritonforge.builder.pipeline import build
    from tritonforge.cli.render import RichReporter
    from tritonforge.perf.analyzer import check_binary
    from tritonforge.perf.config_search import MAX_AUTO_CONCURRENCY, MAX_HIT_RATE, grid, search
    from tritonforge.perf.config_search import write_back as write_spec
    from tritonforge.spec import load_spec

    load = None if concurrency == "auto" else int_list(concurrency, "--concurrency", maximum=1024)
    if load is not None and len(load) != 1:
        raise typer.BadParameter(f"{concurrency!r}: expected 'auto' or one integer", param_hint="'--concurrency'")
    candidate_delays = tuple(int_list(delays, "--delays", minimum=0))
    candidate_instances = tuple(int_list(instances, "--instances", maximum=64))
    _metrics_need_url(metrics_url, url)
    _positive(latency_budget_ms, "--latency-budget-ms")
    check_binary()
    spec_obj = load_spec(spec)
    candidates = grid(spec_obj.max_batch_size, candidate_delays, candidate_instances)
    with (
        _server(url, repo, [spec_obj.name], metrics_url=metrics_url) as (grpc_url, metrics, _),
        Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress,
    ):
        task = progress.add_task("config search", total=len(candidates) + 1)
        result = search(
            spec,
            repo,
            grpc_url,
            load[0] if load else None,
            latency_budget_ms,
            candidates,
            on_trial=lambda i, n, c: progress.update(task, completed=i, total=n, description=c.describe()),
            metrics_url=metrics,
        )
        progress.update(task, total=len(result.trials), completed=len(result.trials))
    how = ""
    if result.probes and any(t.fits(latency_budget_ms) for t in result.probes):
        how = (
            f" (auto: the highest load, of 1 to {MAX_AUTO_CONCURRENCY}, the spec's settings keep within the budget; "
            "the best few also at twice that)"
        )
    elif result.probes:
        how = " (auto: the spec's settings exceed the budget even at 1)"
    table = Table(
        title=f"{result.model}: concurrency {result.concurrency}{how}, p95 budget {latency_budget_ms:g} ms", title_justify="left"
    )
    for col in ("settings", "load", "infer/s", "p50 ms", "p95 ms", "cache hits", "within budget", ""):
        table.add_column(col)
    for t in result.trials:
        mark = (
            "finding the load"
            if t.probe
            else ("default " if t.default else "")
            + ("[green]picked[/]" if t is result.best else "")
            + ("(confirmation)" if t.confirmation else "")
        )
        if t.point is None:
            table.add_row(t.candidate.describe(), f"c{t.concurrency}", "-", "-", "-", "-", "-", f"[red]{t.error}[/]")
            continue
        hits = f"{t.hit_rate:.0%}" + (" [red](not counted)[/]" if t.hit_rate > MAX_HIT_RATE else "")
        table.add_row(
            t.candidate.describe(),
            f"c{t.concurrency}",
            f"{t.point.throughput:.1f}",
            f"{t.point.p50_us / 1000:.1f}",
            f"{t.point.p95_us / 1000:.1f}",
            hits,
            "yes" if t.fits(latency_budget_ms) else "no",
            mark,
        )
    console.print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if result.best is None:
        raise TritonforgeError(f"no setting kept p95 within {latency_budget_ms:g} ms at concurrency {result.concurrency}")
    default, best = result.default, result.best
    if default.point is not None and best.point is not None and best is not default:
        ratios = [
            ("-" if r is None else f"{r:.3f}")
            + (" (default over budget)" if base.point is not None and base.point.p95_us / 1000 > latency_budget_ms else "")
            for r, (_, base) in zip(result.pair_ratios(), result.pairs(), strict=True)
        ]
        console.print(
            f"pick: {best.candidate.describe()}: {best.point.throughput:.1f} infer/s at c{best.concurrency} "
            f"against the default's {default.point.throughput:.1f} at c{default.concurrency}; pick / default "
            f"in the confirmation pairs (same run, order alternating, both at c{best.concurrency}): " + " / ".join(ratios)
        )
        if not result.confirmed:
            console.print(
                "[yellow]the pick did not beat the default in every confirmation pair: within noise; spec left as it is[/]"
            )
    else:
        console.print("pick: the spec's current settings are already the best tried")
    from tritonforge.perf.config_search import TRITON_DEFAULT

    unbatched = result.throughputs(TRITON_DEFAULT)
    if unbatched and result.best.point is not None:
        console.print(
            f"against Triton's default (no dynamic batching, {unbatched[0]:.1f} infer/s at c{result.concurrency}): "
            f"{result.best.point.throughput / unbatched[0]:.2f}x"
        )
    if result.best is not default and result.confirmed:
        if apply:
            write_spec(spec, result.best.candidate)
            console.print(f"wrote the pick into {spec}; rebuilding the repository configs")
            build(spec, repo, reporter=RichReporter())
        else:
            console.print(
                f"proposed, {spec} left as it is: {_spec_fields(result.best.candidate)}; --apply writes it there "
                "and rebuilds (or set those fields by hand)",
                markup=False,
                soft_wrap=True,
            )


def _spec_fields(candidate) -> str:
    """The spec fields `tritonforge perf-search --apply` would write for `candidate`, as YAML paths and values."""
    fields = {"serving.dynamic_batching.enabled": str(candidate.batching).lower()}
    if candidate.batching:
        fields["serving.dynamic_batching.max_queue_delay_us"] = str(candidate.max_queue_delay_us)
        fields["serving.dynamic_batching.preferred_batch_sizes"] = str(list(candidate.preferred_batch_sizes))
    fields["serving.instance_count"] = str(candidate.instance_count)
    fields["serving.intra_op_threads"] = str(candidate.threads)
    return ", ".join(f"{k}: {v}" for k, v in fields.items())


def perf_inputs(
    model: Annotated[str, typer.Argument(help="the model to write input data for (public, runner or a rung)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="perf_analyzer --input-data JSON file to write")] = Path(
        "perf_inputs.json"
    ),
    repo: Annotated[Path, repo_option("model repository to read the build's held-out data from")] = DEFAULT_REPO,
    inputs: Annotated[
        Series,
        typer.Option(
            help=f"the input data: one series (one file holds one; perf's auto is compute, plus cache for a model "
            f"with a response cache). {SERIES_HELP}",
        ),
    ] = "compute",
    input_count: InputCountOption = DEFAULT_INPUT_COUNT,
    max_input_bytes: Annotated[str, typer.Option(help="bound on the file (base64 numbers), as '256MiB' or '1GB'")] = "256MiB",
) -> None:
    """Write perf_analyzer's --input-data file for MODEL from its build's held-out data (by default unique: varied
    within each input's range, every request different, so a cache never answers), and print the perf_analyzer
    command that uses it, with the --shape arguments a model with dynamic dimensions needs."""
    from tritonforge.perf.inputs import (
        check_size,
        file_requests,
        human_bytes,
        model_ranges,
        model_samples,
        select,
        shape_arguments,
        write_input_json,
    )
    from tritonforge.perf.sweep import SERIES as MODES

    bound = _size(max_input_bytes, "--max-input-bytes")
    samples = model_samples(repo, model)
    mode = MODES[inputs]
    check_size(samples, file_requests(samples, mode, input_count), bound, f"model '{model}'", "--input-count")
    chosen = select(samples, mode, input_count, ranges=model_ranges(repo, model))
    write_input_json(chosen, output, max_bytes=bound)
    shapes = " ".join(f"--shape {a}" for a in shape_arguments(chosen[0]))
    console.print(
        f"wrote {len(chosen)} requests ({inputs}) to {output} ({human_bytes(output.stat().st_size)})",
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"tritonforge perf-analyzer -- -m {model} -u 127.0.0.1:8001 -i grpc --input-data {output} "
        f"{shapes} --concurrency-range 1:16:2".replace("  ", " "),
        markup=False,
        soft_wrap=True,
    )


def model_analyzer_config(
    models: Annotated[
        list[str] | None, typer.Argument(help="models to profile (default: every build's public model)", show_default=False)
    ] = None,
    repo: Annotated[Path, repo_option("the built repository the server serves (read)")] = DEFAULT_REPO,
    output_dir: Annotated[
        Path | None, typer.Option(help="directory the config and its files go into (default: REPO.model_analyzer beside it)")
    ] = None,
    url: Annotated[str, url_option("gRPC host:port of the running server (explicit model control)")] = "127.0.0.1:8001",
    metrics_url: Annotated[
        str | None,
        typer.Option(help="its metrics endpoint (default: http://HOST:8002/metrics)", callback=metrics_endpoint),
    ] = None,
    http_url: Annotated[str | None, typer.Option(help="its HTTP host:port (only written when given)")] = None,
    batch_size: Annotated[
        str, typer.Option(help="client batch sizes, a list; each model keeps those within its max_batch_size")
    ] = "1",
    concurrency: Annotated[
        str, typer.Option(help="concurrency levels, a list: '1,2,4,8,16'; or give --concurrency-range")
    ] = DEFAULT_CONCURRENCY,
    concurrency_range: Annotated[
        str | None, typer.Option(help="concurrency levels as perf_analyzer's --concurrency-range START[:END[:STEP]]")
    ] = None,
    instances: Annotated[str, typer.Option(help="instance counts to try, a list")] = "1,2",
    delays: Annotated[str, typer.Option(help="dynamic batching max queue delays to try (us), a list")] = "0,1000",
    stability_percentage: Annotated[
        float, typer.Option(help="perf_analyzer's windows must agree within this percentage (its default: 10)")
    ] = 15.0,
    perf_analyzer_path: Annotated[
        str | None,
        typer.Option("--perf-analyzer", help="perf_analyzer for Model Analyzer to run (default: the bundled one, by a script)"),
    ] = None,
) -> None:
    """Write a Model Analyzer (triton-model-analyzer) profile config for REPO in remote mode: instance counts and
    queue delays swept, max_batch_size kept, client batch sizes within it, the response cache off, the build's
    held-out samples as inputs. Then run `model-analyzer profile -f CONFIG` against the running server."""
    from tritonforge.perf.model_analyzer_config import Endpoints, Sweep, write_config

    levels = (
        perf_range(concurrency_range, "--concurrency-range")
        if concurrency_range is not None
        else int_list(concurrency, "--concurrency", maximum=1024)
    )
    sweep = Sweep(
        batch_sizes=tuple(int_list(batch_size, "--batch-size")),
        concurrency=tuple(levels),
        instances=tuple(int_list(instances, "--instances", maximum=64)),
        delays_us=tuple(int_list(delays, "--delays", minimum=0)),
        stability_pct=_positive(stability_percentage, "--stability-percentage"),
    )
    endpoints = Endpoints(grpc=url, metrics_url=metrics_url or "", http=http_url or "")
    written = write_config(repo, output_dir, models or (), sweep, endpoints, perf_analyzer_path)
    for note in written.notes:
        console.print(f"[yellow]note[/]: {note}")
    for m in written.config.models:
        configs = (
            f"instances {list(m.instances)}" + (f" x max_queue_delay_us {list(m.delays_us)}" if m.delays_us else "")
            if m.sweeps_config
            else "the built config only"
        )
        console.print(
            f"{m.name}: {configs}, max_batch_size {m.max_batch_size or 'none'} kept; client batch {list(m.batch_sizes)}, "
            f"concurrency {list(m.concurrency)}",
            markup=False,
        )
    console.print(f"wrote {written.path}", markup=False)
    console.print(f"model-analyzer profile -f {written.path}", markup=False, soft_wrap=True)


def perf_analyzer(ctx: typer.Context) -> None:
    """Run the bundled perf_analyzer with the arguments after `--`, with the library path it needs:
    `tritonforge perf-analyzer -- -m digits -u 127.0.0.1:8001 -i grpc --concurrency-range 1:8`."""
    import os

    from tritonforge.perf.analyzer import analyzer_env, find_binary

    binary = find_binary()
    os.execve(str(binary), [str(binary), *ctx.args], analyzer_env())
