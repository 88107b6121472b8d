"""How far a candidate's outputs are from the reference's, per output tensor: the figures the accuracy gate judges.

One code for both places that judge: the build's gate compares each variant with FP32 on the held-out set
(Comparator, every sample), and the served model's shadow compares live answers with FP32 (AgreementWindow, the
last N samples of each variant). Both keep per-sample rows (SampleRows) and reduce them the same way (summarize).

numpy only: this module is copied into the served model with the rest of the serving package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .batching import Batch


@dataclass
class OutputMetrics:
    """How far one output of a candidate is from the reference, over all samples.

    top1_agreement is computed for outputs declared as class scores (argmax over the last axis).
    max_rel is |a-b| / max(|ref|, atol) (values near zero count against atol); mean_rel is mean|a-b| / mean|ref|;
    violation is max |a-b| / (atol + rtol*|ref|): at most 1 means every element is within tolerance.
    """

    name: str
    samples: int
    max_abs: float
    max_rel: float
    mean_rel: float
    violation: float
    min_cosine: float
    mean_cosine: float
    top1_agreement: float | None
    class_scores: bool  # judged by top-1/accuracy rather than cosine
    nonfinite: int  # elements that are NaN/Inf in the candidate but finite in the reference

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SampleRows:
    """One output's figures for each sample of a batch (arrays of one length), from which OutputMetrics are made."""

    max_abs: np.ndarray
    max_rel: np.ndarray
    violation: np.ndarray
    abs_sum: np.ndarray
    ref_sum: np.ndarray
    cosine: np.ndarray
    top1_same: np.ndarray | None  # share of each sample's argmaxes that agree (class scores only)
    nonfinite: np.ndarray

    def __len__(self) -> int:
        return len(self.max_abs)

    def part(self, start: int, stop: int | None = None) -> SampleRows:
        """The rows of samples start..stop."""
        cut = slice(start, stop)
        top1 = None if self.top1_same is None else self.top1_same[cut]
        return SampleRows(
            self.max_abs[cut],
            self.max_rel[cut],
            self.violation[cut],
            self.abs_sum[cut],
            self.ref_sum[cut],
            self.cosine[cut],
            top1,
            self.nonfinite[cut],
        )


def sample_rows(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float, class_scores: bool) -> SampleRows:
    """The per-sample figures of one output (first axis: samples)."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    n = len(ref)
    if ref.dtype == object or ref.dtype.kind in "USb":
        same = (ref == cand).reshape(n, -1).all(1)
        zeros = np.zeros(n)
        return SampleRows(zeros, zeros, np.where(same, 0.0, np.inf), zeros, zeros, np.ones(n), None, np.zeros(n, np.int64))
    r = ref.astype(np.float64).reshape(n, -1)
    c = cand.astype(np.float64).reshape(n, -1)
    bad = np.isfinite(r) & ~np.isfinite(c)
    diff = np.where(bad, np.inf, np.abs(r - c))
    diff = np.where(np.isfinite(r) | bad, diff, 0.0)
    empty = r.shape[1] == 0
    if empty:
        zeros = np.zeros(n)
        max_abs, max_rel, violation, abs_sum, ref_sum = zeros, zeros, zeros, zeros, zeros
    else:
        max_abs = diff.max(1)
        max_rel = (diff / np.maximum(np.abs(r), max(atol, 1e-12))).max(1)
        violation = (diff / (atol + rtol * np.abs(r) + 1e-30)).max(1)
        abs_sum = np.nan_to_num(diff, posinf=1e30).sum(1)
        ref_sum = np.abs(np.nan_to_num(r)).sum(1)
    flat_c = np.nan_to_num(c)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(flat_c, axis=1)
    cosine = np.where(norms > 0, (r * flat_c).sum(1) / np.where(norms > 0, norms, 1), 1.0)
    top1 = None
    if class_scores:
        top1 = (ref.argmax(-1) == cand.argmax(-1)).reshape(n, -1).mean(1)
    return SampleRows(max_abs, max_rel, violation, abs_sum, ref_sum, cosine, top1, bad.sum(1))


def summarize(name: str, rows: Sequence[SampleRows], class_scores: bool) -> OutputMetrics:
    """One output's metrics over every sample of `rows`."""

    def cat(field: str) -> np.ndarray:
        parts = [getattr(r, field) for r in rows if len(r)]
        return np.concatenate(parts) if parts else np.zeros(0)

    samples = sum(len(r) for r in rows)
    abs_sum, ref_sum = float(cat("abs_sum").sum()), float(cat("ref_sum").sum())
    cosine = cat("cosine")
    if not len(cosine):
        cosine = np.ones(1)
    top1 = [r.top1_same for r in rows if r.top1_same is not None and len(r)]
    return OutputMetrics(
        name=name,
        samples=samples,
        max_abs=float(cat("max_abs").max(initial=0.0)),
        max_rel=float(cat("max_rel").max(initial=0.0)),
        mean_rel=abs_sum / ref_sum if ref_sum > 0 else (0.0 if abs_sum == 0 else np.inf),
        violation=float(cat("violation").max(initial=0.0)),
        min_cosine=float(cosine.min()),
        mean_cosine=float(cosine.mean()),
        top1_agreement=float(np.concatenate(top1).mean()) if top1 else None,
        class_scores=class_scores,
        nonfinite=int(cat("nonfinite").sum()),
    )


def batch_rows(
    reference: Batch, candidate: Batch, names: Sequence[str], atol: float, rtol: float, class_outputs: set[str]
) -> dict[str, SampleRows]:
    """Each output's per-sample rows for one batch (same samples, same order)."""
    out = {}
    for name in names:
        ref, cand = np.asarray(reference[name]), np.asarray(candidate[name])
        if ref.shape != cand.shape:
            raise ValueError(f"output '{name}': candidate shape {cand.shape} != reference shape {ref.shape}")
        out[name] = sample_rows(ref, cand, atol, rtol, name in class_outputs)
    return out


class Comparator:
    """Accumulates metrics for every output over many batches; also task accuracy when labels are given."""

    def __init__(self, output_names: list[str], atol: float, rtol: float, class_outputs: list[str] | None = None) -> None:
        self._names = list(output_names)
        self._atol, self._rtol = atol, rtol
        self._class_outputs = set(class_outputs or [])
        self._rows: dict[str, list[SampleRows]] = {n: [] for n in self._names}
        self._correct: dict[str, int] = {"reference": 0, "candidate": 0}
        self._labelled = 0

    def add(
        self, reference: Batch, candidate: Batch, labels: np.ndarray | None = None, classifier_output: str | None = None
    ) -> None:
        """Add one batch of outputs (same samples, same order)."""
        for name, rows in batch_rows(reference, candidate, self._names, self._atol, self._rtol, self._class_outputs).items():
            self._rows[name].append(rows)
        if labels is not None and classifier_output is not None:
            self._labelled += len(labels)
            self._correct["reference"] += int((np.argmax(reference[classifier_output], -1) == labels).sum())
            self._correct["candidate"] += int((np.argmax(candidate[classifier_output], -1) == labels).sum())

    def results(self) -> dict[str, OutputMetrics]:
        """Metrics per output."""
        return {n: summarize(n, rows, n in self._class_outputs) for n, rows in self._rows.items()}

    def accuracy(self) -> dict[str, float] | None:
        """Task accuracy (argmax vs labels) of reference and candidate, when labels were given."""
        if not self._labelled:
            return None
        return {k: v / self._labelled for k, v in self._correct.items()}


class _Ring:
    """One output's per-sample figures of the last `size` samples, in fixed arrays written in a circle."""

    FIELDS = ("max_abs", "max_rel", "violation", "abs_sum", "ref_sum", "cosine", "nonfinite")

    def __init__(self, size: int, class_scores: bool) -> None:
        self._arrays = {f: np.zeros(size) for f in self.FIELDS}
        self._top1 = np.zeros(size) if class_scores else None
        self._size = size

    def write(self, rows: SampleRows, at: int) -> None:
        """Rows (at most `size`) written from position `at` on, wrapping round."""
        index = (at + np.arange(len(rows))) % self._size
        for f in self.FIELDS:
            self._arrays[f][index] = getattr(rows, f)
        if self._top1 is not None and rows.top1_same is not None:
            self._top1[index] = rows.top1_same

    def rows(self, count: int) -> SampleRows:
        """The `count` samples written (their order does not matter to summarize)."""
        a = {f: v[:count] for f, v in self._arrays.items()}
        top1 = None if self._top1 is None else self._top1[:count]
        return SampleRows(
            a["max_abs"], a["max_rel"], a["violation"], a["abs_sum"], a["ref_sum"], a["cosine"], top1, a["nonfinite"]
        )


class AgreementWindow:
    """The last `size` samples compared, per output: what the shadow judges a served variant on. Each sample's
    figures live in fixed arrays, so adding one and judging the window cost the same at any window size."""

    def __init__(self, output_names: Sequence[str], atol: float, rtol: float, class_outputs: Sequence[str], size: int) -> None:
        self._names = list(output_names)
        self._atol, self._rtol = atol, rtol
        self._class_outputs = set(class_outputs)
        self.size = size
        self._rings = {n: _Ring(size, n in self._class_outputs) for n in self._names}
        self._next = 0  # where the next sample is written
        self.samples = 0

    def add(self, reference: Batch, candidate: Batch) -> dict[str, SampleRows]:
        """Add one batch (the oldest samples leave past `size`); returns the batch's own rows."""
        rows = batch_rows(reference, candidate, self._names, self._atol, self._rtol, self._class_outputs)
        n = len(next(iter(rows.values())))
        kept = min(n, self.size)
        for name, r in rows.items():
            self._rings[name].write(r.part(n - kept), self._next)
        self._next = (self._next + kept) % self.size
        self.samples = min(self.samples + kept, self.size)
        return rows

    def clear(self) -> None:
        self._next = self.samples = 0

    def metrics(self) -> dict[str, OutputMetrics]:
        """Metrics per output over the samples in the window."""
        return {n: summarize(n, [self._rings[n].rows(self.samples)], n in self._class_outputs) for n in self._names}


def sample_metrics(rows: Mapping[str, SampleRows], class_outputs: Sequence[str], sample: int) -> dict[str, OutputMetrics]:
    """Metrics per output of one sample of a batch's rows (to judge that sample alone)."""
    return {n: summarize(n, [r.part(sample, sample + 1)], n in class_outputs) for n, r in rows.items()}
