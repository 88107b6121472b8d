"""Deferred metric updates for tritonforge's Python-backend models (copied next to each model.py).

Every pb_utils metric update is a blocking round trip from the stub to the Triton process; made inside
`execute` they add to the latency of every request. Models record counts and observations here instead, and a
background thread sends them every `interval_s` (the stub serialises its messages to the parent, so sending
from another thread is safe) and once more at finalize. /metrics then lags by at most `interval_s`.
"""

import threading

import triton_python_backend_utils as pb_utils


class DeferredMetrics:
    """Counter increments and histogram observations, sent off the request path."""

    def __init__(self, interval_s=0.1, name="metrics"):
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._counts = {}  # id(metric) -> [metric, pending increment]
        self._observed = {}  # id(metric) -> [metric, [values]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-flush", daemon=True)
        self._thread.start()

    def increment(self, metric, value=1):
        if not value:
            return
        with self._lock:
            entry = self._counts.setdefault(id(metric), [metric, 0])
            entry[1] += value

    def observe(self, metric, value):
        with self._lock:
            self._observed.setdefault(id(metric), [metric, []])[1].append(value)

    def flush(self):
        """Send everything recorded so far."""
        with self._lock:
            counts, observed = self._counts, self._observed
            self._counts, self._observed = {}, {}
        for metric, value in counts.values():
            metric.increment(value)
        for metric, values in observed.values():
            for value in values:
                metric.observe(value)

    def _run(self):
        while not self._stop.wait(self.interval_s):
            try:
                self.flush()
            except Exception as e:  # a metric that cannot be sent must never stop serving
                pb_utils.Logger.log_warn(f"metrics not sent: {type(e).__name__}: {e}")

    def close(self):
        """Stop the thread and send what is left (call from finalize)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
