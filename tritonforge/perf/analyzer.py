"""Run the real perf_analyzer binary for one measurement point and read its CSV.

perf_analyzer comes from the manylinux wheel of tritonclient 2.50.0, installed as files into the local server's
environment (tritonforge.server.environment); it links libb64.so.0d (Debian package libb64-0d) and
libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12, in the same environment), even without a GPU.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tritonforge.errors import TritonforgeError

INSTALL_HINT = (
    "the local server's environment carries it (tritonforge serving-env makes it: the tritonclient 2.50.0 "
    "manylinux wheel's bin/perf_analyzer, as 2.60+ needs glibc 2.38, and nvidia-cuda-runtime-cu12); it also needs "
    "apt-get install libb64-0d. Or point TRITONFORGE_PERF_ANALYZER at one"
)


class PerfAnalyzerError(TritonforgeError):
    """perf_analyzer is missing, cannot start, or failed a measurement (the message says what it printed)."""


def _environment():
    from tritonforge.server.environment import ServingEnvironment

    return ServingEnvironment.default().ensure()


def find_binary() -> Path:
    """$TRITONFORGE_PERF_ANALYZER, else the local server environment's perf_analyzer, else one on PATH."""
    chosen = os.environ.get("TRITONFORGE_PERF_ANALYZER")
    if chosen:
        if not Path(chosen).is_file():
            raise PerfAnalyzerError(f"TRITONFORGE_PERF_ANALYZER={chosen}: no such file; {INSTALL_HINT}")
        return Path(chosen)
    bundled = _environment().perf_analyzer
    if bundled.is_file():
        return bundled
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    raise PerfAnalyzerError(f"perf_analyzer not found; {INSTALL_HINT}")


def library_dir() -> Path:
    """The directory perf_analyzer's libcudart.so.12 is in (the serving environment's), which the loader does not search."""
    return _environment().cudart_dir


def analyzer_env() -> dict[str, str]:
    """The environment perf_analyzer needs: libcudart.so.12 (from the serving environment) on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(library_dir()), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def check_binary() -> str:
    """Run `perf_analyzer --version`; raise with what to install when it cannot start."""
    binary = find_binary()
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=analyzer_env())
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip()
        hint = (
            "apt-get install libb64-0d"
            if "libb64" in out
            else ("pip install nvidia-cuda-runtime-cu12" if "libcudart" in out else INSTALL_HINT)
        )
        raise PerfAnalyzerError(f"{binary} cannot start: {out[-400:]}\n{hint}")
    return proc.stdout.strip()


MEASUREMENT_MODES = ("time_windows", "count_windows")


@dataclass(frozen=True)
class MeasureSettings:
    """How perf_analyzer measures one point."""

    url: str
    protocol: str = "grpc"
    measurement_mode: str = "time_windows"
    measurement_interval_ms: int = 1000
    measurement_request_count: int = 50
    stability_pct: float = 15.0
    max_trials: int = 6
    percentile: int | None = None  # stabilise on this latency percentile instead of the average
    collect_metrics: bool = False
    timeout_s: float = 300.0


# PerfPoint's numbers that perf_analyzer measures (a failed point has every one at 0)
MEASURED_FIELDS = (
    "throughput",
    "p50_us",
    "p90_us",
    "p95_us",
    "p99_us",
    "avg_us",
    "client_send_us",
    "client_recv_us",
    "network_server_us",
    "server_queue_us",
    "server_compute_input_us",
    "server_compute_infer_us",
    "server_compute_output_us",
)


@dataclass
class PerfPoint:
    """One measured point: load level, throughput, client latency percentiles and server time breakdown (us)."""

    model: str
    batch_size: int
    concurrency: int | None
    request_rate: float | None
    throughput: float  # inferences per second
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    avg_us: float
    client_send_us: float
    client_recv_us: float
    network_server_us: float
    server_queue_us: float
    server_compute_input_us: float
    server_compute_infer_us: float
    server_compute_output_us: float
    cache_hit_us: float | None = None
    cache_miss_us: float | None = None
    # requests answered from a response cache during the point / requests: tritonforge's (from /metrics before
    # and after) and Triton's own (its statistics); None where they could not be counted
    cache_hit_rate: float | None = None
    cache_hits: int | None = None
    requests: int | None = None  # answered by the model during the point (Triton's statistics; all attempts)
    inputs: int | None = None  # requests in the --input-data file of the attempt kept (perf_analyzer cycles)
    # what the point was measured at: perf_analyzer's windows agreed within stability_pct (a point not stable
    # at first is measured again with longer windows and twice the percentage)
    stability_pct: float | None = None
    window_ms: int | None = None
    gpu: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)  # the local server's processes: cpu_pct, cpu_ms_per_inference, ...
    # an ensemble's steps during the point, from Triton's statistics: model -> requests, avg_batch, server_ms
    composing: dict = field(default_factory=dict)
    # a shadowed model's samples during the point (serving.shadow, from /metrics): compared, dropped, errors
    shadow: dict = field(default_factory=dict)
    label: str = ""  # how this point was asked for (e.g. inputs mode)
    note: str = ""  # e.g. measured again with longer windows because the first try was not stable
    error: str = ""  # perf_analyzer's message for a point it could not measure (then every number is 0)
    # why a measurement does not count (a compute point the cache answered): its numbers are set to 0
    void: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def add_note(self, text: str) -> None:
        """Append `text` to the point's note ('; ' between notes)."""
        self.note = f"{self.note}; {text}" if self.note else text

    @property
    def ok(self) -> bool:
        """Measured, and counts: neither failed nor void."""
        return not self.error and not self.void

    def voided(self, reason: str) -> PerfPoint:
        """This point, kept as void: its measured numbers set to 0 so no table, plot or gate can use them."""
        zeros: dict[str, Any] = dict.fromkeys(MEASURED_FIELDS, 0.0)
        return replace(self, void=reason, **zeros)

    @classmethod
    def failed(cls, model: str, batch_size: int, concurrency: int | None, request_rate: float | None, error: str) -> PerfPoint:
        zeros: dict[str, Any] = dict.fromkeys(MEASURED_FIELDS, 0.0)
        return cls(
            model=model,
            batch_size=batch_size,
            concurrency=concurrency,
            request_rate=request_rate,
            error=error.strip()[-1500:],
            **zeros,
        )


_COLUMNS = {
    "Inferences/Second": "throughput",
    "Client Send": "client_send_us",
    "Client Recv": "client_recv_us",
    "Network+Server Send/Recv": "network_server_us",
    "Server Queue": "server_queue_us",
    "Server Compute Input": "server_compute_input_us",
    "Server Compute Infer": "server_compute_infer_us",
    "Server Compute Output": "server_compute_output_us",
    "p50 latency": "p50_us",
    "p90 latency": "p90_us",
    "p95 latency": "p95_us",
    "p99 latency": "p99_us",
    "Avg latency": "avg_us",
    "Server Cache Hit": "cache_hit_us",
    "Server Cache Miss": "cache_miss_us",
}


def parse_csv(path: Path, model: str, batch_size: int) -> list[PerfPoint]:
    """Rows of a perf_analyzer `-f` CSV (times in microseconds)."""
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            values = {attr: float(row[col]) for col, attr in _COLUMNS.items() if row.get(col) not in (None, "")}
            measured: dict[str, Any] = {k: values.get(k, 0.0) for k in MEASURED_FIELDS}
            if "avg_us" not in values:  # no average column: its seven disjoint components add up to it
                values["avg_us"] = sum(
                    values.get(k, 0.0)
                    for k in (
                        "client_send_us",
                        "network_server_us",
                        "server_queue_us",
                        "server_compute_input_us",
                        "server_compute_infer_us",
                        "server_compute_output_us",
                        "client_recv_us",
                    )
                )
            points.append(
                PerfPoint(
                    model=model,
                    batch_size=batch_size,
                    concurrency=int(row["Concurrency"]) if row.get("Concurrency") else None,
                    request_rate=float(row["Request Rate"]) if row.get("Request Rate") else None,
                    **measured,
                    cache_hit_us=values.get("cache_hit_us"),
                    cache_miss_us=values.get("cache_miss_us"),
                )
            )
    return points


InputData = Path | Callable[[int], Path]


def measure(
    model: str,
    settings: MeasureSettings,
    batch_size: int = 1,
    concurrency: int | None = None,
    request_rate: float | None = None,
    input_data: InputData | None = None,
    shapes: dict[str, list[int]] | None = None,
    bls_models: list[str] | None = None,
    retries: int = 2,
) -> PerfPoint:
    """One measured point. perf_analyzer refuses points whose windows never agree (common on shared
    machines): such a point is measured again with windows twice as long and twice the allowed variation,
    up to `retries` times, and says so in its `note`. `input_data` is perf_analyzer's --input-data file, or a
    function of the attempt (0, 1, ...) giving the file for it: unique inputs must come fresh for a second
    attempt, or the response cache answers every request the first attempt already sent."""
    current = settings
    for attempt in range(retries + 1):
        data = input_data(attempt) if callable(input_data) else input_data
        try:
            point = _measure_once(model, current, batch_size, concurrency, request_rate, data, shapes, bls_models)
        except PerfAnalyzerError as e:
            if "stable measurement" not in str(e) or attempt == retries:
                raise
            current = replace(
                current, measurement_interval_ms=current.measurement_interval_ms * 2, stability_pct=current.stability_pct * 2
            )
            continue
        point.stability_pct, point.window_ms = current.stability_pct, current.measurement_interval_ms
        if attempt:
            point.note = (
                f"not stable at first; measured with {current.measurement_interval_ms} ms windows within "
                f"{current.stability_pct:g}%"
            )
        return point
    raise AssertionError("unreachable")


def _measure_once(
    model: str,
    settings: MeasureSettings,
    batch_size: int,
    concurrency: int | None,
    request_rate: float | None,
    input_data: Path | None,
    shapes: dict[str, list[int]] | None,
    bls_models: list[str] | None,
) -> PerfPoint:
    if (concurrency is None) == (request_rate is None):
        raise ValueError("give exactly one of concurrency or request_rate")
    with tempfile.TemporaryDirectory(prefix="tf-perf-") as tmp:
        out = Path(tmp) / "point.csv"
        args = [
            str(find_binary()),
            "-m",
            model,
            "-u",
            settings.url,
            "-i",
            settings.protocol,
            "-b",
            str(batch_size),
            "-f",
            str(out),
            "--measurement-mode",
            settings.measurement_mode,
            "-p",
            str(settings.measurement_interval_ms),
            "--measurement-request-count",
            str(settings.measurement_request_count),
            "-s",
            str(settings.stability_pct),
            "-r",
            str(settings.max_trials),
        ]
        if concurrency is not None:
            args += ["--concurrency-range", f"{concurrency}:{concurrency}"]
        else:
            args += ["--request-rate-range", f"{request_rate}:{request_rate}"]
        if settings.percentile:
            args += ["--percentile", str(settings.percentile)]
        if input_data is not None:
            args += ["--input-data", str(input_data)]
        for name, dims in (shapes or {}).items():
            args += ["--shape", f"{name}:{','.join(str(d) for d in dims)}"]
        if bls_models:
            args += ["--bls-composing-models", ",".join(bls_models)]
        if settings.collect_metrics:
            args += ["--collect-metrics", "--verbose-csv"]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, env=analyzer_env(), timeout=settings.timeout_s)
        except subprocess.TimeoutExpired:
            raise PerfAnalyzerError(f"perf_analyzer on '{model}' ran past {settings.timeout_s:.0f}s") from None
        except FileNotFoundError:
            raise PerfAnalyzerError(f"perf_analyzer not found; {INSTALL_HINT}") from None
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise PerfAnalyzerError(f"perf_analyzer failed on model '{model}' (exit {proc.returncode}):\n{tail}")
        points = parse_csv(out, model, batch_size)
    if not points:
        raise PerfAnalyzerError(f"perf_analyzer wrote no measurement for model '{model}'")
    return points[0]
