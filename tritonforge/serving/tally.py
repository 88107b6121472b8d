"""Counts and observations the serving logic records in memory; `metrics.py` sends them to Triton's /metrics
from a background thread (each metric update is a blocking round trip to the server process, so requests never
pay for one). Without Triton, tests read them directly."""

import threading


class Tally:
    def __init__(self):
        self._lock = threading.Lock()
        self._counts = {}  # (name, labels tuple) -> pending increment
        self._totals = {}  # same key -> total since start (what tests read)
        self._observed = {}  # name -> [values]

    def add(self, name, value=1, **labels):
        if not value:
            return
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + value
            self._totals[key] = self._totals.get(key, 0) + value

    def observe(self, name, value):
        with self._lock:
            self._observed.setdefault(name, []).append(value)

    def take(self):
        """(counts, observations) recorded since the last take."""
        with self._lock:
            counts, observed = self._counts, self._observed
            self._counts, self._observed = {}, {}
        return counts, observed

    def total(self, name, **labels):
        """Everything added under `name` whose labels include `labels`, since start."""
        with self._lock:
            return sum(v for (n, lab), v in self._totals.items() if n == name and set(labels.items()) <= set(lab))
