"""The CLI's one vocabulary: the options several commands share, each with one name and one meaning everywhere
(VOCABULARY, the table docs/cli.md shows), and the parsers of their values."""

from __future__ import annotations

import math
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer

from tritonforge.cli.render import err_console

DEFAULT_REPO = Path("model_repository")

# perf's input series (tritonforge.perf.sweep.SERIES and AUTO; a unit test keeps them equal, so that `--help` needs
# no import of perf/)
Series = Literal["compute", "cache", "validation"]
SeriesOrAuto = Literal["auto", "compute", "cache", "validation"]
SERIES: tuple[str, ...] = get_args(Series)
AUTO = "auto"
SERIES_HELP = (
    "compute: unique inputs within each input's range, never sent before (a cache never answers); "
    "cache: a few inputs repeated (the cache answers); validation: the build's held-out samples as they are"
)


VOCABULARY = [
    (
        "`--repo`, `-r`",
        "the model repository; each command's help says whether it reads or writes it (serve also takes it as REPO)",
    ),
    (
        "`--url`, `-u`",
        "a running server's gRPC address, `host:port` without a scheme, as perf_analyzer's `-u` (Triton's gRPC port: "
        "8001 unless set otherwise); an HTTP URL is refused with the reason",
    ),
    ("`--http-url`", "Triton's HTTP endpoint, `http://host:port` or `host:port`, only where HTTP is asked (probe)"),
    ("`--metrics-url`", "Triton's metrics endpoint, `http://host:8002/metrics`, or `host:port[/metrics]` as perf_analyzer's"),
    ("`-o`, `--output`", "a file the command writes"),
    ("`--output-dir`", "a directory the command writes its files into"),
    (
        "`--inputs`",
        "the input data a load sends: `compute` (unique, never sent before: no cache hit), `cache` (a few repeated), "
        "`validation` (the build's held-out samples); perf also `auto` (compute, plus cache for a model with a cache); "
        "`compute` by default",
    ),
    (
        "`--input-count`",
        "how many requests that input data holds: perf derives it per point by default (what the point may send, "
        "within `--max-input-bytes`), perf-inputs writes 20000",
    ),
    ("`--cache-size`", "bytes for the local server's Triton response cache (0: off; default: what the builds ask for)"),
    (
        "`--concurrency-range`, `--request-rate-range`",
        "perf_analyzer's `START[:END[:STEP]]`, with its meaning: START to END in steps of STEP (default 1), "
        "`1:16:2` is 1,3,...,15; END defaults to START",
    ),
    (
        "`--concurrency`, `--request-rate`, `--batch-size`, `--delays`, `--instances`",
        "a comma-separated list of values, `1,2,4,8,16` (perf-search's `--concurrency`: one level, or `auto`)",
    ),
    (
        "`--measurement-mode`, `--measurement-interval`, `--stability-percentage`, `--max-trials`",
        "as perf_analyzer's; the defaults differ where the help says so (shorter windows, so a sweep ends in minutes)",
    ),
]


def repo_option(help: str) -> Any:
    """`--repo/-r`, with the command's own help: what it reads from or writes to the repository."""
    return typer.Option("--repo", "-r", help=help)


def deprecated(old: str, new: str, why: str = "") -> None:
    """The one-line notice an old spelling prints (it still works)."""
    err_console.print(f"note: {old} is deprecated; use {new}{f' ({why})' if why else ''}", markup=False, soft_wrap=True)


# ---- addresses ----------------------------------------------------------------------------------------------


def grpc_address(value: str | None) -> str | None:
    """--url: gRPC host:port, no scheme (as perf_analyzer's -u and tritonclient.grpc take it)."""
    if value is None:
        return None
    from tritonforge.client.endpoints import grpc_endpoint  # here, not at import: --help stays quick
    from tritonforge.client.errors import InvalidEndpoint

    try:
        return grpc_endpoint(value, port=True)
    except InvalidEndpoint as e:
        raise typer.BadParameter(f"{e} (as perf_analyzer's -u takes it)") from None


def http_endpoint(value: str) -> str:
    """--http-url: http://host:port, https://host:port, or host:port (http:// is then assumed)."""
    url = value if "://" in value else f"http://{value}"
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise typer.BadParameter(f"{value!r}: expected Triton's HTTP endpoint, as http://127.0.0.1:8000 or 127.0.0.1:8000")
    return url


def metrics_endpoint(value: str | None) -> str | None:
    """--metrics-url: http://host:port/metrics; host:port[/path] as perf_analyzer's --metrics-url takes it, too."""
    if value is None:
        return None
    url = http_endpoint(value)
    return url if urllib.parse.urlsplit(url).path not in ("", "/") else f"{url.rstrip('/')}/metrics"


def url_option(help: str) -> Any:
    return typer.Option("--url", "-u", help=help, callback=grpc_address)


MetricsUrlOption = Annotated[
    str | None,
    typer.Option(
        help="with --url: Triton's metrics endpoint, http://host:8002/metrics (or host:8002 as perf_analyzer's "
        "--metrics-url), for the response cache's hit rates",
        callback=metrics_endpoint,
    ),
]

CacheSizeOption = Annotated[
    int | None,
    typer.Option(min=0, help="the local server: bytes for Triton's response cache (0: off; default: what the builds ask for)"),
]

# ---- lists and ranges ---------------------------------------------------------------------------------------


def int_list(text: str, option: str, minimum: int = 1, maximum: int | None = None) -> list[int]:
    """'1,2,4' -> [1, 2, 4], each from `minimum` to `maximum`; anything else is a usage error naming `option`."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum or (maximum is not None and max(values) > maximum):
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise typer.BadParameter(
            f"{text!r}: expected a comma-separated list of integers {bounds}, as '1,2,4'", param_hint=f"'{option}'"
        )
    return values


def number_list(text: str, option: str) -> list[float]:
    """'50,100' -> numbers above zero (request rates per second); a usage error naming `option` otherwise."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise typer.BadParameter(
            f"{text!r}: expected a comma-separated list of numbers above 0, as '50,100'", param_hint=f"'{option}'"
        )
    return values


def perf_range(text: str, option: str, integer: bool = True) -> list[Any]:
    """perf_analyzer's range syntax, with its meaning: START[:END[:STEP]], from START to END (inclusive) in steps
    of STEP; END defaults to START (one level), STEP to 1. perf_analyzer's END 0 (search up to its
    --latency-threshold) has no counterpart here and is refused, as is anything that is not such a range."""
    kind = int if integer else float
    what = "integers" if integer else "numbers"
    try:
        parts = [kind(x) for x in text.split(":")]
        if not 1 <= len(parts) <= 3 or not all(math.isfinite(p) for p in parts):
            raise ValueError
        start, end, step = parts[0], parts[1] if len(parts) > 1 else parts[0], parts[2] if len(parts) > 2 else kind(1)
        if start <= 0 or end < start or step <= 0:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected START[:END[:STEP]] as perf_analyzer's, {what} with 0 < START <= END and STEP > 0 "
            f"(from START to END in steps of STEP, default 1: '1:16:2' is 1,3,5,...,15)",
            param_hint=f"'{option}'",
        ) from None
    if integer:
        return list(range(int(start), int(end) + 1, int(step)))  # kind is int here
    return [round(start + i * step, 9) for i in range(int((end - start) / step + 1e-9) + 1)]


def one_of(values: dict[str, Any], ctx: typer.Context, default: str) -> tuple[str, Any]:
    """The one option of `values` (option -> raw value) the user gave, else `default`; two given is a usage error."""

    def given_here(option: str) -> bool:
        source = ctx.get_parameter_source(option.lstrip("-").replace("-", "_"))
        return source is not None and source.name != "DEFAULT"

    given = [option for option, value in values.items() if value is not None and given_here(option)]
    if len(given) > 1:
        raise typer.BadParameter(f"give one of {', '.join(values)}, not {' and '.join(given)}", param_hint=f"'{given[1]}'")
    chosen = given[0] if given else default
    return chosen, values[chosen]
