"""Counts and observations the serving logic records in memory; `metrics.py` sends them to Triton's /metrics
from a background thread (each metric update is a blocking round trip to the server process, so requests never
pay for one). Without Triton, tests read them directly."""

from __future__ import annotations

import threading

Labels = tuple[tuple[str, str], ...]  # sorted (label, value) pairs


class Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, Labels], float] = {}  # (name, labels tuple) -> pending increment
        self._totals: dict[tuple[str, Labels], float] = {}  # same key -> total since start (what tests read)
        self._observed: dict[str, list[float]] = {}  # name -> [values]

    def add(self, name: str, value: float = 1, /, **labels: str) -> None:
        if not value:
            return
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + value
            self._totals[key] = self._totals.get(key, 0) + value

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            self._observed.setdefault(name, []).append(value)

    def take(self) -> tuple[dict[tuple[str, Labels], float], dict[str, list[float]]]:
        """(counts, observations) recorded since the last take."""
        with self._lock:
            counts, observed = self._counts, self._observed
            self._counts, self._observed = {}, {}
        return counts, observed

    def total(self, name: str, **labels: str) -> float:
        """Everything added under `name` whose labels include `labels`, since start."""
        with self._lock:
            return sum(v for (n, lab), v in self._totals.items() if n == name and set(labels.items()) <= set(lab))
