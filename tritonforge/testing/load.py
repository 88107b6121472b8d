"""A steady load against a served model, for tests of what happens while it serves (a rebuild, a reload, a
replica or a Redis dying): every request's inputs, answer or error are kept, so a test can check that none
failed and that each answer is the right one for its own input."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Answer:
    index: int  # which of the inputs was sent
    outputs: dict[str, np.ndarray]
    sent_at: float  # time.monotonic() when the request was sent
    latency_s: float


@dataclass
class LoadRecord:
    answers: list[Answer] = field(default_factory=list)
    errors: list[tuple[int, float, str]] = field(default_factory=list)  # (input index, sent at, error)

    @property
    def requests(self) -> int:
        return len(self.answers) + len(self.errors)

    def latencies(self) -> np.ndarray:
        return np.array([a.latency_s for a in self.answers])


class SteadyLoad:
    """`threads` workers send `inputs` round-robin through `infer(inputs) -> outputs` until stopped (or until
    `max_requests` in all).

    with SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=4) as load:
        ...                      # rebuild, reload, kill something
    assert not load.record.errors
    """

    def __init__(
        self,
        infer: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
        inputs: Sequence[Mapping[str, np.ndarray]],
        threads: int = 4,
        max_requests: int | None = None,
        pause_s: float = 0.0,
    ) -> None:
        self.infer, self.inputs, self.threads = infer, list(inputs), threads
        self.max_requests, self.pause_s = max_requests, pause_s
        self.record = LoadRecord()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def _take(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or (self.max_requests is not None and self._next >= self.max_requests):
                return None
            i, self._next = self._next, self._next + 1
            return i

    def _work(self) -> None:
        while (i := self._take()) is not None:
            index = i % len(self.inputs)
            sent = time.monotonic()
            try:
                out = self.infer(self.inputs[index])
            except Exception as e:  # recorded; the test decides
                with self._lock:
                    self.record.errors.append((index, sent, f"{type(e).__name__}: {e}"))
            else:
                answer = Answer(index, {k: np.asarray(v) for k, v in out.items()}, sent, time.monotonic() - sent)
                with self._lock:
                    self.record.answers.append(answer)
            if self.pause_s:
                time.sleep(self.pause_s)

    def start(self) -> SteadyLoad:
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def wait_for(self, requests: int, timeout: float = 120.0) -> None:
        """Block until at least `requests` requests have been answered or failed."""
        deadline = time.monotonic() + timeout
        while self.record.requests < requests and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> LoadRecord:
        self._stop.set()
        for w in self._workers:
            w.join(60)
        return self.record

    def __enter__(self) -> SteadyLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
