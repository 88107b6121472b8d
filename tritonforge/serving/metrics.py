"""Sends what the serving logic tallied to Triton's /metrics, off the request path.

Every pb_utils metric update is a blocking round trip from the stub to the server process; made inside
`execute` they would add to every request's latency. A background thread sends the counts every `interval_s`
(the stub serialises its messages to the parent, so another thread may send them), sets gauges from their
current state, writes the log lines queued by state changes, and runs periodic checks (probing absent rungs).
/metrics then lags by at most `interval_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import triton_python_backend_utils as pb_utils

from .metric_names import FAMILIES
from .tally import Labels, Tally

HIT_BUCKETS = [50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000]


class MetricsPublisher:
    def __init__(
        self,
        tally: Tally,
        interval_s: float,
        name: str,
        labels: Mapping[str, str],
        gauges: Iterable[Callable[[], Mapping[tuple[str, Labels], float]]] = (),
        periodic: Iterable[Callable[[], None]] = (),
        period_s: float = 30.0,
    ) -> None:
        self.tally, self.interval_s, self.labels = tally, interval_s, dict(labels)
        self.gauges, self.periodic, self.period_s = list(gauges), list(periodic), period_s
        # The stub attaches MetricFamily to pb_utils when the model initializes, not when it is imported.
        kinds = {
            "counter": pb_utils.MetricFamily.COUNTER,
            "gauge": pb_utils.MetricFamily.GAUGE,
            "histogram": pb_utils.MetricFamily.HISTOGRAM,
        }
        self._families = {n: pb_utils.MetricFamily(n, desc, kinds[kind]) for n, (desc, kind) in FAMILIES.items()}
        self._metrics: dict[tuple[str, Labels], Any] = {}
        self._shown: dict[tuple[str, Labels], float] = {}
        self._logs: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_error = ""
        self._last_periodic = time.monotonic() - period_s + 1.0  # the first check a second after start
        self._thread = threading.Thread(target=self._run, name=f"{name}-metrics", daemon=True)

    def prepare(self, name: str, **labels: str) -> None:
        """Create a metric now, on the model's own thread (call from initialize for every label set known then)."""
        self._metric(name, tuple(sorted({**self.labels, **labels}.items())))

    def start(self) -> None:
        """Start sending; call as the last step of initialize, so a model that fails to load leaves no thread
        talking to the server."""
        self._thread.start()

    def log(self, level: str, message: str) -> None:
        """Queue a log line for the background thread (state changes: once each, never per request)."""
        with self._lock:
            self._logs.append((level, message))

    def _metric(self, name: str, labels: Labels) -> Any:
        key = (name, labels)
        if key not in self._metrics:
            family = self._families[name]
            kwargs = {"buckets": HIT_BUCKETS} if FAMILIES[name][1] == "histogram" else {}
            self._metrics[key] = family.Metric(dict(labels), **kwargs)
        return self._metrics[key]

    def flush(self) -> None:
        counts, observed = self.tally.take()
        for (name, labels), value in counts.items():
            self._metric(name, labels).increment(value)
        base = tuple(sorted(self.labels.items()))
        for name, values in observed.items():
            metric = self._metric(name, base)
            for value in values:
                metric.observe(value)
        for source in self.gauges:
            for (name, own), value in source().items():
                labels = tuple(sorted({**self.labels, **dict(own)}.items()))
                if self._shown.get((name, labels)) != value:
                    self._metric(name, labels).set(value)
                    self._shown[(name, labels)] = value
        with self._lock:
            logs, self._logs = self._logs, []
        for level, message in logs:
            (pb_utils.Logger.log_warn if level == "warn" else pb_utils.Logger.log_info)(message)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if time.monotonic() - self._last_periodic >= self.period_s:
                    self._last_periodic = time.monotonic()
                    for task in self.periodic:
                        task()
                self.flush()
            except Exception as e:  # a metric that cannot be sent must never stop serving
                message = f"metrics not sent: {type(e).__name__}: {e}"
                if message != self._last_error:  # once per distinct error, not every interval
                    self._last_error = message
                    pb_utils.Logger.log_warn(message)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
            self.flush()
