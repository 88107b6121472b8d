"""`tritonforge serve`, `reload`, `probe` and `serving-env`: the local server and a running one."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.cli.options import DEFAULT_REPO, CacheSizeOption, deprecated, http_endpoint, repo_option, url_option
from tritonforge.cli.render import console, err_console, model_states_table
from tritonforge.errors import TritonforgeError


def serve(
    repo: Annotated[
        Path | None, typer.Argument(help="model repository to serve (read), as --repo gives it", show_default=False)
    ] = None,
    repo_flag: Annotated[Path | None, repo_option("model repository to serve (read; default: model_repository)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(min=1, max=65535, help="Triton's HTTP port (probe's --http-url)")] = 8000,
    grpc_port: Annotated[int, typer.Option(min=1, max=65535, help="Triton's gRPC port (the other commands' --url)")] = 8001,
    metrics_port: Annotated[int, typer.Option(min=1, max=65535, help="Triton's metrics port (--metrics-url)")] = 8002,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="load only these models")] = None,
    cache_size: CacheSizeOption = None,
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

    if repo is not None and repo_flag is not None and repo != repo_flag:
        raise typer.BadParameter(f"REPO {repo} and --repo {repo_flag}: give one", param_hint="'--repo'")
    repo = repo or repo_flag or DEFAULT_REPO

    server = LocalTritonServer(
        repo,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        load_models=model,
        cache_size=cache_size,
        log_path=log_file or serve_log_path(),  # kept when the server stops
        model_control="poll" if poll else "explicit",
        poll_seconds=poll or 1,
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
    url: Annotated[str, url_option("the running server's gRPC address, host:port; it runs in explicit model control mode")] = (
        "127.0.0.1:8001"
    ),
    repo: Annotated[Path, repo_option("model repository the server serves, to read the builds from")] = DEFAULT_REPO,
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
    repo: Annotated[
        Path, repo_option("model repository the server serves, to read each build's probe request and reference from")
    ] = DEFAULT_REPO,
    http_url: Annotated[
        str,
        typer.Option(
            help="the running server's HTTP endpoint, http://host:port or host:port (the probe asks over HTTP, as a "
            "load balancer does)",
            callback=http_endpoint,
        ),
    ] = "http://127.0.0.1:8000",
    url: Annotated[
        str | None,
        typer.Option(
            hidden=True, help="the old name of --http-url, for an http:// URL (a gRPC host:port is refused with the reason)"
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds per call")] = 2.0,
) -> None:
    """Readiness as a load balancer needs it: every public model READY and answering one tiny inference as its
    build's reference does (exit 1 if not, naming the model and output). The same check the serving image runs as
    its probe (tritonforge/server/probe.py)."""
    from tritonforge.server.probe import check, public_models

    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise typer.BadParameter(
                f"{url!r}: --url is a gRPC host:port in tritonforge, and probe asks over HTTP: give Triton's HTTP "
                "endpoint as --http-url host:port (its HTTP port, 8000 unless the server was started with another)",
                param_hint="'--url'",
            )
        deprecated("probe --url", "--http-url", "--url is the gRPC address in every other command")
        http_url = http_endpoint(url)
    problems = check(repo, http_url, timeout)
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
