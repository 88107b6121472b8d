"""`tritonforge serve`, `reload`, `probe` and `serving-env`: the local server and a running one."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.cli.options import RepoOption
from tritonforge.cli.render import console, err_console, model_states_table
from tritonforge.errors import TritonforgeError


def serve(
    repo: Annotated[Path, typer.Argument(help="model repository")] = Path("model_repository"),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    grpc_port: Annotated[int, typer.Option(min=1, max=65535)] = 8001,
    metrics_port: Annotated[int, typer.Option(min=1, max=65535)] = 8002,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="load only these models")] = None,
    cache_size: Annotated[
        int | None,
        typer.Option(min=0, help="bytes for Triton's local response cache (0: off; default: what the builds ask for)"),
    ] = None,
    log_file: Annotated[Path | None, typer.Option(help="write the server log here")] = None,
    poll: Annotated[
        int,
        typer.Option(
            min=0,
            help="poll the repository every N seconds and load rebuilds by "
            "itself (0: explicit model control; `tritonforge reload` after "
            "a rebuild)",
        ),
    ] = 0,
) -> None:
    """Run the local tritonserver (CPU, Python backend) on REPO until Ctrl-C or SIGTERM."""
    from tritonforge.server.process import LocalTritonServer, serve_log_path

    control = {"model_control": "poll", "poll_seconds": poll} if poll else {}
    server = LocalTritonServer(
        repo,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        load_models=model,
        cache_size=cache_size,
        log_path=log_file or serve_log_path(),  # kept when the server stops
        **control,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    from tritonforge.server.process import StartCancelled
    from tritonforge.server.summary import summarize

    try:
        with console.status(f"starting tritonserver on {repo}"):
            server.start(attempts=1, cancel=stop)
    except StartCancelled:
        code = server.stop()
        server.cleanup()
        console.print(f"stopped while starting (exit code {code}); server log kept: {server.log_path}", markup=False)
        return
    try:
        states = server.model_states()
        console.print(model_states_table(states))
        console.print(summarize(repo, states).line(), markup=False, soft_wrap=True)
        console.print(f"gRPC {server.grpc_url}   HTTP {server.http_url}   metrics {server.metrics_url}")
        console.print(f"log: {server.log_path}")
        if server.cache_bytes:
            console.print(f"Triton's response cache: local, {server.cache_bytes / 2**20:g} MiB (--cache-config)")
        console.print("serving; Ctrl-C or SIGTERM stops the server")
        while not stop.wait(0.5):
            if not server.is_alive():
                err_console.print(f"[red]tritonserver exited unexpectedly[/]\n{server.log_tail()}")
                raise typer.Exit(1)
        console.print("stopping tritonserver ...")
    finally:
        code = server.stop()
        server.cleanup()
    console.print(f"tritonserver stopped (exit code {code}); server log kept: {server.log_path}", markup=False)


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
        console.print(
            f"[green]{public}[/]: loaded {', '.join(result.loaded) or 'nothing'}"
            + (f"; unloaded {', '.join(result.unloaded)}" if result.unloaded else "")
        )
        for model, reason in result.failed.items():
            console.print(f"  not loaded: {model}: {reason}", markup=False)
        if result.native_only:
            console.print(
                f"  native-only, not loaded as expected: {', '.join(result.native_only)} (this server has no "
                f"{' or '.join(sorted(set(result.native_only.values())))} backend)",
                markup=False,
            )
        if public in result.failed:
            raise TritonforgeError(f"the public model '{public}' did not load; the server keeps its previous version")


def probe(
    repo: Annotated[Path, typer.Option("--repo", "-r", help="the repository the server serves")] = Path("model_repository"),
    url: Annotated[str, typer.Option(help="Triton's HTTP endpoint")] = "http://127.0.0.1:8000",
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds per call")] = 2.0,
) -> None:
    """Readiness as a load balancer needs it: every public model READY and answering one tiny inference as its
    build's reference does (exit 1 if not, naming the model and output). The same check the serving image runs as
    its probe (tritonforge/server/probe.py)."""
    from tritonforge.server.probe import check, public_models

    problems = check(repo, url, timeout)
    for p in problems:
        err_console.print(f"not ready: {p}", markup=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"ready: {', '.join(public_models(repo))}", markup=False)


def serving_env(
    show: Annotated[bool, typer.Option("--path", help="print the environment's directory and exit")] = False,
) -> None:
    """Make the local server's environment now (tritonforge/serving/requirements.txt, the server binary and
    perf_analyzer) instead of on the first `serve`; print where it is and what it runs."""
    from tritonforge.server.environment import REQUIREMENTS, ServingEnvironment

    env = ServingEnvironment.default()
    if show:
        print(env.root)
        return
    env.ensure(say=lambda message: console.print(message, markup=False))
    numpy = env.package_version("numpy")
    console.print(
        f"{env.root}: Python {env.python_version}, numpy {numpy}, onnxruntime "
        f"{env.package_version('onnxruntime')} (from {REQUIREMENTS}), server {env.server_dist}",
        markup=False,
    )
