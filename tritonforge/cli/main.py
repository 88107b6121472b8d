"""The `tritonforge` command: parse, call the library, render. Errors a user can fix exit with code 2."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from tritonforge.errors import TritonforgeError
from tritonforge.cli.render import (
    RichReporter,
    console,
    err_console,
    export_check_table,
    model_states_table,
    not_published_lines,
    variants_table,
)

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Take a trained model to a fast, verified Triton Inference Server deployment.")

RepoOption = Annotated[Path, typer.Option("--repo", "-r", help="Triton model repository to write/read")]


@app.command()
def build(
    specs: Annotated[list[Path], typer.Argument(help="build spec YAML files (or directories of them)")],
    repo: RepoOption = Path("model_repository"),
    force: Annotated[bool, typer.Option(help="rebuild even if nothing changed")] = False,
) -> None:
    """Export, verify and publish each spec's model into the repository (atomically; a no-op if unchanged)."""
    from tritonforge.build.pipeline import build as run_build
    from tritonforge.build.pipeline import iter_specs

    for spec_path in iter_specs(specs):
        console.rule(f"[bold]{spec_path}")
        outcome = run_build(spec_path, repo, force=force, reporter=RichReporter())
        if outcome.noop:
            console.print(f"[green]{outcome.spec.name}[/]: up to date in {outcome.repo} (no files touched)")
            continue
        if outcome.export_check:
            console.print(export_check_table(outcome.export_check))
        if outcome.report:
            console.print(variants_table(outcome.report))
            for line in not_published_lines(outcome.report):
                console.print(f"  {line}", markup=False)
        for note in outcome.notes:
            console.print(f"[yellow]note[/]: {escape(note)}")
        console.print(f"[green]{outcome.spec.name}[/]: wrote {', '.join(outcome.manifest.models)} to {outcome.repo}")


@app.command()
def report(
    model: Annotated[str, typer.Argument(help="public model name (the spec's name)")],
    repo: RepoOption = Path("model_repository"),
    markdown: Annotated[bool, typer.Option("--markdown", help="print the full build_report.md")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print build_report.json")] = False,
) -> None:
    """Print the build report of MODEL: every variant, its gate decision, accuracy and speed against FP32."""
    import json

    from tritonforge.build.report import read_report, to_markdown

    data = read_report(repo, model)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif markdown:
        print(to_markdown(data))
    else:
        console.print(variants_table(data))
        for line in not_published_lines(data):
            console.print(f"  {line}", markup=False)
        console.print(f"full report: {repo / model / 'build_report.md'}")


@app.command()
def serve(
    repo: Annotated[Path, typer.Argument(help="model repository")] = Path("model_repository"),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    grpc_port: Annotated[int, typer.Option(min=1, max=65535)] = 8001,
    metrics_port: Annotated[int, typer.Option(min=1, max=65535)] = 8002,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="load only these models")] = None,
    cache_size: Annotated[int, typer.Option(min=0, help="bytes for Triton's local response cache (0: off)")] = 0,
    log_file: Annotated[Optional[Path], typer.Option(help="write the server log here")] = None,
) -> None:
    """Run the local tritonserver (CPU, Python backend) on REPO until Ctrl-C or SIGTERM."""
    from tritonforge.server.process import LocalTritonServer

    server = LocalTritonServer(repo, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                               load_models=model, cache_size=cache_size, log_path=log_file)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with console.status(f"starting tritonserver on {repo}"):
        server.start(attempts=1)
    try:
        console.print(model_states_table(server.model_states()))
        console.print(f"gRPC {server.grpc_url}   HTTP {server.http_url}   metrics {server.metrics_url}")
        console.print(f"log: {server.log_path}")
        console.print("serving; Ctrl-C or SIGTERM stops the server")
        while not stop.wait(0.5):
            if not server.is_alive():
                err_console.print(f"[red]tritonserver exited unexpectedly[/]\n{server.log_tail()}")
                raise typer.Exit(1)
        console.print("stopping tritonserver ...")
    finally:
        code = server.stop()
        server.cleanup()
    console.print(f"tritonserver stopped (exit code {code})")


@app.command()
def reload(
    models: Annotated[list[str], typer.Argument(help="public models (spec names) whose build to load")],
    url: Annotated[str, typer.Option(help="gRPC host:port of a server in explicit model control mode")] = "127.0.0.1:8001",
    repo: RepoOption = Path("model_repository"),
) -> None:
    """After a rebuild: load the build's models into a running server, compute models first and the public
    model last, then unload the models the rebuild dropped. The server keeps serving the old version of each
    model until its new one is ready."""
    from tritonforge.server.reload import reload_build

    for public in models:
        result = reload_build(url, repo, public)
        console.print(f"[green]{public}[/]: loaded {', '.join(result.loaded) or 'nothing'}"
                      + (f"; unloaded {', '.join(result.unloaded)}" if result.unloaded else ""))
        for model, reason in result.failed.items():
            console.print(f"  not loaded: {model}: {reason}", markup=False)
        if public in result.failed:
            raise TritonforgeError(f"the public model '{public}' did not load; the server keeps its previous version")


def _register_perf() -> None:
    from tritonforge.cli.perf import perf, perf_search

    app.command("perf")(perf)
    app.command("perf-search")(perf_search)


_register_perf()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except TritonforgeError as e:
        err_console.print("[red]error:[/]", end=" ")
        err_console.print(str(e), markup=False, soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
