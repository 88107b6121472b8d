"""The accuracy gate kept in production: sampled live answers compared with FP32, a drifting variant demoted.

The public model answers every request from the rung that answered it, as always. For a sampled share of the
answered requests (`fraction`) it also hands the request's model inputs and its answer to this shadow, which never
makes the request wait: a bounded queue (a full one drops the sample and counts it) and one worker thread that
collects what came in 50 ms, runs the FP32 reference on it (one batch per variant and tensor layout) and compares
the two with the build gate's own code (agreement.py's figures, gate.py's checks
and thresholds), at the lowest CPU priority on one ONNX Runtime thread of its own, so the reference computes on
what the answers leave idle (under full load the queue fills and samples are dropped, counted, rather than slow
the answers). Each variant keeps its last `window` compared samples; once it holds `judged_after` (`min_samples`,
more where a top-1 threshold needs them), a window that fails the gate demotes that variant in the router (the next rung serves, FP32 at worst), logged once. A demoted
variant serves again only when a reload or a rebuild loads a new model (or after `probation_s`, with its window
emptied). Nothing here changes an answer, and a reference that fails is counted (tritonforge_shadow_errors_total),
never raised.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import metric_names as m
from .agreement import AgreementWindow, sample_metrics
from .batching import Batch, concat, group_by_shape
from .gate import GateResult, judge
from .settings import ShadowSettings
from .tally import Labels, Tally

COLLECT_S = 0.05  # after a sample arrives, the worker waits this long for more to compare with it

# demote(rung, reason) -> whether it was demoted now; restore(rung, reason); log(level, message)
Demote = Callable[[str, str], bool]
Restore = Callable[[str, str], None]
Log = Callable[[str, str], None]


@dataclass(frozen=True)
class ShadowSample:
    """One sampled request: the rung that answered it, the inputs that rung took, the answer it gave."""

    rung: str
    inputs: Batch
    outputs: Batch


def _own(batch: Batch) -> Batch:
    """The arrays copied: a request's tensors may live in memory the server reuses once it is answered."""
    return {k: np.array(v, copy=True) for k, v in batch.items()}


class Shadow:
    """Compares sampled answers of every rung but the reference with `reference` (FP32), off the request path."""

    def __init__(
        self,
        reference: Callable[[Batch], Batch],
        reference_rung: str | None,
        settings: ShadowSettings,
        output_names: Sequence[str],
        tally: Tally,
        labels: dict[str, str],
        demote: Demote,
        restore: Restore,
        log: Log,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reference, self.reference_rung, self.settings = reference, reference_rung, settings
        self.output_names = list(output_names)
        self.tally, self.labels = tally, dict(labels)
        self._demote, self._restore, self._log = demote, restore, log
        self._draw, self._clock = draw, clock
        self.windows: dict[str, AgreementWindow] = {}
        self.results: dict[str, GateResult] = {}  # each variant's window, as last judged
        self.demoted: dict[str, float] = {}  # variant -> when this shadow demoted it
        self._failing: set[str] = set()  # variants whose window breaks the gate (logged once per change)
        self._reference_failing = False
        self._queue: queue.Queue[ShadowSample | None] = queue.Queue(maxsize=settings.max_pending)
        self._thread = threading.Thread(target=self._run, name="tritonforge-shadow", daemon=True)

    # ---- the request path --------------------------------------------------------------------------
    def offer(self, rung: str, inputs: Batch, outputs: Batch) -> None:
        """Sample this answer with probability `fraction` and queue it for comparison, never waiting."""
        if rung == self.reference_rung or self._draw() >= self.settings.fraction:
            return
        try:
            self._queue.put_nowait(ShadowSample(rung, _own(inputs), _own(outputs)))
        except queue.Full:
            self.tally.add(m.SHADOW_DROPPED, **self.labels)

    # ---- the worker --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the worker; samples still queued are not compared."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            # the lowest CPU priority for this thread alone (Linux): the reference runs on what answers leave idle
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread; below nice 19
        while True:
            first = self._queue.get()
            if first is None:
                return
            time.sleep(COLLECT_S)  # let more samples come: compared together, each costs less of the GIL
            samples, stop = [first], False
            while not stop:
                try:
                    sample = self._queue.get_nowait()
                except queue.Empty:
                    break
                stop = sample is None
                if sample is not None:
                    samples.append(sample)
            try:
                self.compare(*samples)
            except Exception as e:  # the shadow must never take the model down
                self._log("warn", f"shadow: comparison failed: {type(e).__name__}: {str(e)[:300]}")
            if stop:
                return

    def compare(self, *samples: ShadowSample) -> None:
        """Run the reference on the samples, add them to their variants' windows and judge each window once:
        samples of one variant whose tensors differ only in their first dimension run as one batch."""
        by_rung: dict[str, list[ShadowSample]] = {}
        for sample in samples:
            by_rung.setdefault(sample.rung, []).append(sample)
        groups = [[same[i] for i in idx] for same in by_rung.values() for idx in group_by_shape([x.inputs for x in same])]
        for group in groups:
            inputs, _ = concat([g.inputs for g in group], range(len(group)))
            try:
                reference = self.reference(inputs)
            except Exception as e:
                self.tally.add(m.SHADOW_ERRORS, len(group), **self.labels)
                if not self._reference_failing:
                    self._reference_failing = True
                    self._log("warn", f"shadow: the FP32 reference failed (counted, answers unchanged): {str(e)[:300]}")
                continue
            if self._reference_failing:
                self._reference_failing = False
                self._log("info", "shadow: the FP32 reference answers again")
            self._add(group[0].rung, reference, concat([g.outputs for g in group], range(len(group)))[0])

    def _add(self, rung: str, reference: Batch, outputs: Batch) -> None:
        s, gate = self.settings, self.settings.gate
        window = self.windows.get(rung)
        if window is None:
            window = self.windows[rung] = AgreementWindow(self.output_names, gate.atol, gate.rtol, gate.class_outputs, s.window)
        rows = window.add(reference, outputs)
        n = len(next(iter(rows.values())))
        variant = {"variant": rung}
        self.tally.add(m.SHADOW_SAMPLES, n, **variant, **self.labels)
        broken = sum(not judge(sample_metrics(rows, gate.class_outputs, i), None, gate, gate.kinds).passed for i in range(n))
        self.tally.add(m.SHADOW_BROKEN, broken, **variant, **self.labels)
        if window.samples >= s.judged_after:
            self._judge(rung, judge(window.metrics(), None, gate, gate.kinds, s.confidence), window.samples)

    def _judge(self, rung: str, result: GateResult, samples: int) -> None:
        self.results[rung] = result
        if result.passed:
            if rung in self._failing:
                self._failing.discard(rung)
                self._log("info", f"shadow: {rung} keeps the gate again over its last {samples} samples")
            return
        reason = f"its last {samples} live samples against FP32 break the gate: " + "; ".join(result.failures)
        if rung in self._failing:
            return
        self._failing.add(rung)
        if self._demote(rung, reason):
            self.demoted[rung] = self._clock()
        else:
            self._log("warn", f"shadow: {rung} {reason}; it is the last rung, so it keeps serving")

    def tick(self) -> None:
        """Off the request path, periodically: a demoted variant whose probation is over serves again, its window
        emptied."""
        probation = self.settings.probation_s
        if probation is None:
            return
        for rung, since in list(self.demoted.items()):
            if self._clock() - since >= probation:
                del self.demoted[rung]
                self._failing.discard(rung)
                self.windows.pop(rung, None)
                self.results.pop(rung, None)
                self._restore(rung, f"probation of {probation:g} s over; judged again on new samples")

    def gauges(self) -> dict[tuple[str, Labels], float]:
        """Each variant's window: every gate check's value (label `check`) and the samples it holds."""
        out: dict[tuple[str, Labels], float] = {}
        for rung, window in list(self.windows.items()):
            out[(m.SHADOW_WINDOW_SAMPLES, (("variant", rung),))] = window.samples
        for rung, result in list(self.results.items()):
            for c in result.checks:
                out[(m.SHADOW_WINDOW, (("check", c.name), ("variant", rung)))] = c.value
        return out
