"""`tritonforge perf` and `tritonforge perf-search`: parse, call perf/, render."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tritonforge.cli.render import console
from tritonforge.errors import TritonforgeError


def _ints(text: str, option: str, minimum: int = 1, maximum: int | None = None) -> list[int]:
    """'1,2,4' or '1:16' (doubling from the first to the last) -> ints from `minimum` to `maximum`.
    Anything else is a usage error naming `option` (a '0:16' range would otherwise double 0 for ever)."""
    try:
        if ":" in text:
            lo, hi = (int(x) for x in text.split(":", 1))
            if lo < max(minimum, 1) or hi < lo:
                raise ValueError
            values = []
            while lo <= hi:
                values.append(lo)
                lo *= 2
        else:
            values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum or (maximum is not None and max(values) > maximum):
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise typer.BadParameter(
            f"{text!r}: expected integers {bounds}, as '1,2,4' or a doubling range "
            f"'LOW:HIGH' with {max(minimum, 1)} <= LOW <= HIGH",
            param_hint=f"'{option}'",
        )
    return values


def _rates(text: str, option: str) -> list[float]:
    """'50,100' -> request rates per second, each above zero; a usage error naming `option` otherwise."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise typer.BadParameter(f"{text!r}: expected request rates above 0 per second, as '50,100'", param_hint=f"'{option}'")
    return values


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise typer.BadParameter(f"{value:g}: expected a number above 0", param_hint=f"'{option}'")
    return value


def _choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r}: expected one of {', '.join(choices)}", param_hint=f"'{option}'")
    return value


@contextlib.contextmanager
def _server(url: str | None, repo: Path, models: list[str], cache_size: int | None = None, metrics_url: str | None = None):
    """(gRPC url, metrics url) of the server to measure: the one at `url`, or the local one started on `repo`."""
    if url:
        from tritonforge.server.reach import require_server

        require_server(url)
        yield url, metrics_url
        return
    from tritonforge.server.process import LocalTritonServer

    with console.status(f"starting the local tritonserver on {repo}"):
        server = LocalTritonServer(repo, load_models=models, cache_size=cache_size).start()
    try:
        yield server.grpc_url, server.metrics_url
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
    ):
        table.add_column(col)
    for p in points:
        load = f"c{p.concurrency}" if p.concurrency is not None else f"r{p.request_rate:g}/s"
        if not p.ok:
            table.add_row(p.model, p.label, str(p.batch_size), load, "[red]failed[/]", "-", "-", "-", "-", "-", "-")
            continue
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
        )
    return table


def perf(
    models: Annotated[list[str], typer.Argument(help="models to measure (several: compared side by side)")],
    url: Annotated[str | None, typer.Option(help="gRPC host:port of a running server (default: start the local one)")] = None,
    metrics_url: Annotated[str | None, typer.Option(help="with --url: http://host:8002/metrics, for cache hit rates")] = None,
    repo: Annotated[Path, typer.Option("--repo", "-r", help="model repository (input data; local server)")] = Path(
        "model_repository"
    ),
    batch_size: Annotated[str, typer.Option(help="batch sizes, e.g. '1,8'")] = "1",
    concurrency: Annotated[str, typer.Option(help="concurrency levels: '1,2,4' or '1:16' (doubling)")] = "1:16",
    request_rate: Annotated[str | None, typer.Option(help="request rates per second instead of concurrency, '50,100'")] = None,
    measurement_mode: Annotated[str, typer.Option(help="time_windows | count_windows")] = "time_windows",
    measurement_interval: Annotated[int, typer.Option(min=1, help="window length in ms (time_windows)")] = 1000,
    stability: Annotated[float, typer.Option(help="windows must agree within this percentage")] = 15.0,
    max_trials: Annotated[int, typer.Option(min=1, help="windows per point at most")] = 6,
    inputs: Annotated[
        str,
        typer.Option(
            help="auto: a compute series (inputs never sent before, no cache hit) for "
            "every model and a cache series (repeated inputs) for models with a "
            "cache; or one series for all: compute | cache | validation"
        ),
    ] = "auto",
    input_count: Annotated[
        int,
        typer.Option(
            min=1, help="distinct samples per point (compute: more than one point sends; validation: at most the stored ones)"
        ),
    ] = 20000,
    baseline_model: Annotated[str | None, typer.Option(help="report ratios against this model")] = None,
    output_dir: Annotated[Path, typer.Option(help="where report, JSON and plots go")] = Path("perf_results"),
    baseline: Annotated[Path | None, typer.Option(help="regression gate: compare with this perf_report.json")] = None,
    max_throughput_drop: Annotated[float, typer.Option(min=0.0, help="gate: allowed throughput drop (fraction)")] = 0.10,
    max_p95_rise: Annotated[float, typer.Option(min=0.0, help="gate: allowed p95 rise (fraction)")] = 0.20,
    save_baseline: Annotated[Path | None, typer.Option(help="also copy the result here as a future baseline")] = None,
    cache_size: Annotated[
        int | None,
        typer.Option(min=0, help="local server: bytes for Triton's response cache (default: what the builds ask for)"),
    ] = None,
) -> None:
    """Sweep MODELS with the real perf_analyzer; write perf_report.md/.json and plots; optionally gate on a baseline."""
    from tritonforge.perf.analyzer import MEASUREMENT_MODES, MeasureSettings, check_binary
    from tritonforge.perf.regression import compare
    from tritonforge.perf.report import load_result, write_report
    from tritonforge.perf.sweep import AUTO, SERIES, SweepPlan, plan_series, run_sweep

    batches, loads = _ints(batch_size, "--batch-size"), _ints(concurrency, "--concurrency")
    rates = _rates(request_rate, "--request-rate") if request_rate else []
    chosen = _choice(inputs, (AUTO, *SERIES), "--inputs")
    _choice(measurement_mode, MEASUREMENT_MODES, "--measurement-mode")
    _positive(stability, "--stability")
    from tritonforge.repository.reader import Repository

    for model in models:  # the repository holds the input data, with --url too
        Repository(repo).require(model)
    plan = SweepPlan(
        models=models,
        batch_sizes=batches,
        concurrency=loads,
        request_rates=rates,
        series=plan_series(repo, models, chosen),
        input_count=input_count,
    )
    check_binary()
    base = load_result(baseline) if baseline else None
    with _server(url, repo, models, cache_size, metrics_url) as (grpc_url, metrics):
        settings = MeasureSettings(
            url=grpc_url,
            measurement_mode=measurement_mode,
            measurement_interval_ms=measurement_interval,
            stability_pct=stability,
            max_trials=max_trials,
        )
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("perf_analyzer", total=len(plan.points()))

            def on_point(done, total, point, label):
                progress.update(task, completed=done, description=f"perf_analyzer {label}")

            result = run_sweep(plan, settings, repo, on_point, metrics)
    written = write_report(result, output_dir, baseline_model)
    console.print(_points_table(result.points))
    if result.interrupted:
        console.print(f"[yellow]interrupted[/]: kept {len(result.points)} finished point(s)")
    for p in result.points:
        if not p.ok:
            console.print(
                f"failed: {p.model} {p.label} b{p.batch_size} c{p.concurrency}: {p.error.splitlines()[-1] if p.error else ''}",
                markup=False,
            )
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
    repo: Annotated[Path, typer.Option("--repo", "-r")] = Path("model_repository"),
    url: Annotated[str | None, typer.Option(help="gRPC host:port of a running server in explicit model control mode")] = None,
    metrics_url: Annotated[str | None, typer.Option(help="with --url: http://host:8002/metrics, to count cache hits")] = None,
    concurrency: Annotated[
        str,
        typer.Option(
            help="perf_analyzer concurrency of every trial; auto: the highest of "
            "1, 2, 4, ... 64 at which the spec's settings keep p95 within the "
            "budget"
        ),
    ] = "auto",
    latency_budget_ms: Annotated[float, typer.Option(help="p95 must stay within this")] = 50.0,
    delays: Annotated[str, typer.Option(help="max queue delays to try (us)")] = "0,1000,4000",
    instances: Annotated[str, typer.Option(help="instance counts of the compute models to try")] = "1,2",
    apply: Annotated[
        bool,
        typer.Option(
            "--apply/--no-apply",
            "--write-back/--no-write-back",
            help="write the confirmed pick into the spec (comments kept) and rebuild; default: only propose it",
        ),
    ] = False,
    output: Annotated[Path, typer.Option(help="JSON with every trial")] = Path("perf_results/config_search.json"),
) -> None:
    """Try dynamic batching settings and instance counts on a running model, pick the best under a latency budget
    and propose it; --apply writes it into the spec and rebuilds."""
    from tritonforge.builder.pipeline import build
    from tritonforge.cli.render import RichReporter
    from tritonforge.perf.analyzer import check_binary
    from tritonforge.perf.config_search import MAX_AUTO_CONCURRENCY, MAX_HIT_RATE, grid, search
    from tritonforge.perf.config_search import write_back as write_spec
    from tritonforge.spec import load_spec

    load = None if concurrency == "auto" else _ints(concurrency, "--concurrency", maximum=1024)
    if load is not None and len(load) != 1:
        raise typer.BadParameter(f"{concurrency!r}: expected 'auto' or one integer", param_hint="'--concurrency'")
    candidate_delays = tuple(_ints(delays, "--delays", minimum=0))
    candidate_instances = tuple(_ints(instances, "--instances", maximum=64))
    _positive(latency_budget_ms, "--latency-budget-ms")
    check_binary()
    spec_obj = load_spec(spec)
    candidates = grid(spec_obj.max_batch_size, candidate_delays, candidate_instances)
    with (
        _server(url, repo, [spec_obj.name], metrics_url=metrics_url) as (grpc_url, metrics),
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
    if default.point is not None and best is not default:
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
    output: Annotated[Path, typer.Option("--output", "-o", help="perf_analyzer --input-data JSON to write")] = Path(
        "perf_inputs.json"
    ),
    repo: Annotated[Path, typer.Option("--repo", "-r")] = Path("model_repository"),
    inputs: Annotated[
        str,
        typer.Option(
            help="validation (the build's held-out samples) | compute (unique, within each "
            "input's range: no cache hit) | cache (a few repeated)"
        ),
    ] = "validation",
    count: Annotated[int, typer.Option(min=1, help="requests in the file")] = 2000,
) -> None:
    """Write perf_analyzer's --input-data file for MODEL from its build's held-out data (unique: varied within
    each input's range, every request different, so a cache never answers), and print the perf_analyzer command
    that uses it, with the --shape arguments a model with dynamic dimensions needs."""
    from tritonforge.perf.inputs import model_ranges, model_samples, select, shape_arguments, write_input_json
    from tritonforge.perf.sweep import SERIES

    samples = model_samples(repo, model)
    chosen = select(samples, SERIES[_choice(inputs, tuple(SERIES), "--inputs")], count, ranges=model_ranges(repo, model))
    write_input_json(chosen, output)
    shapes = " ".join(f"--shape {a}" for a in shape_arguments(chosen[0]))
    console.print(f"wrote {len(chosen)} requests ({inputs}) to {output}", markup=False)
    console.print(
        f"tritonforge perf-analyzer -- -m {model} -u 127.0.0.1:8001 -i grpc --input-data {output} "
        f"{shapes} --concurrency-range 1:16:2".replace("  ", " "),
        markup=False,
        soft_wrap=True,
    )


def perf_analyzer(ctx: typer.Context) -> None:
    """Run the bundled perf_analyzer with the arguments after `--`, with the library path it needs:
    `tritonforge perf-analyzer -- -m digits -u 127.0.0.1:8001 -i grpc --concurrency-range 1:8`."""
    import os

    from tritonforge.perf.analyzer import analyzer_env, find_binary

    binary = find_binary()
    os.execve(str(binary), [str(binary), *ctx.args], analyzer_env())
