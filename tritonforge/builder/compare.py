"""Compare a candidate model's outputs with the reference's, batch by batch, per output tensor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tritonforge.serving.batching import Batch


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
class _Acc:
    atol: float
    rtol: float
    samples: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    abs_sum: float = 0.0
    ref_sum: float = 0.0
    violation: float = 0.0
    cosines: list[np.ndarray] = field(default_factory=list)
    top1_same: int = 0
    top1_total: int = 0
    nonfinite: int = 0


class Comparator:
    """Accumulates metrics for every output over many batches; also task accuracy when labels are given."""

    def __init__(self, output_names: list[str], atol: float, rtol: float, class_outputs: list[str] | None = None) -> None:
        self._acc = {n: _Acc(atol, rtol) for n in output_names}
        self._class_outputs = set(class_outputs or [])
        self._correct: dict[str, int] = {"reference": 0, "candidate": 0}
        self._labelled = 0

    def add(
        self, reference: Batch, candidate: Batch, labels: np.ndarray | None = None, classifier_output: str | None = None
    ) -> None:
        """Add one batch of outputs (same samples, same order)."""
        for name, acc in self._acc.items():
            ref = np.asarray(reference[name])
            cand = np.asarray(candidate[name])
            if ref.shape != cand.shape:
                raise ValueError(f"output '{name}': candidate shape {cand.shape} != reference shape {ref.shape}")
            self._add_output(acc, ref, cand, name in self._class_outputs)
        if labels is not None and classifier_output is not None:
            self._labelled += len(labels)
            self._correct["reference"] += int((np.argmax(reference[classifier_output], -1) == labels).sum())
            self._correct["candidate"] += int((np.argmax(candidate[classifier_output], -1) == labels).sum())

    @staticmethod
    def _add_output(acc: _Acc, ref: np.ndarray, cand: np.ndarray, class_scores: bool) -> None:
        if ref.dtype == object or ref.dtype.kind in "USb":
            same = ref == cand
            acc.samples += len(ref)
            acc.violation = max(acc.violation, 0.0 if np.all(same) else np.inf)
            return
        r = ref.astype(np.float64)
        c = cand.astype(np.float64)
        bad = np.isfinite(r) & ~np.isfinite(c)
        acc.nonfinite += int(bad.sum())
        diff = np.where(bad, np.inf, np.abs(r - c))
        diff = np.where(np.isfinite(r) | bad, diff, 0.0)
        acc.samples += len(r)
        if diff.size:
            acc.max_abs = max(acc.max_abs, float(diff.max()))
            acc.max_rel = max(acc.max_rel, float((diff / np.maximum(np.abs(r), max(acc.atol, 1e-12))).max()))
            acc.violation = max(acc.violation, float((diff / (acc.atol + acc.rtol * np.abs(r) + 1e-30)).max()))
            acc.abs_sum += float(np.nan_to_num(diff, posinf=1e30).sum())
            acc.ref_sum += float(np.abs(np.nan_to_num(r)).sum())
        flat_r = r.reshape(len(r), -1)
        flat_c = np.nan_to_num(c.reshape(len(c), -1))
        norms = np.linalg.norm(flat_r, axis=1) * np.linalg.norm(flat_c, axis=1)
        cos = np.where(norms > 0, (flat_r * flat_c).sum(1) / np.where(norms > 0, norms, 1), 1.0)
        acc.cosines.append(cos)
        if class_scores:
            acc.top1_same += int((r.argmax(1) == c.argmax(1)).sum())
            acc.top1_total += len(r)

    def results(self) -> dict[str, OutputMetrics]:
        """Metrics per output."""
        out = {}
        for name, a in self._acc.items():
            cos = np.concatenate(a.cosines) if a.cosines else np.ones(1)
            out[name] = OutputMetrics(
                name=name,
                samples=a.samples,
                max_abs=a.max_abs,
                max_rel=a.max_rel,
                mean_rel=a.abs_sum / a.ref_sum if a.ref_sum > 0 else (0.0 if a.abs_sum == 0 else np.inf),
                violation=a.violation,
                min_cosine=float(cos.min()),
                mean_cosine=float(cos.mean()),
                top1_agreement=a.top1_same / a.top1_total if a.top1_total else None,
                class_scores=name in self._class_outputs,
                nonfinite=a.nonfinite,
            )
        return out

    def accuracy(self) -> dict[str, float] | None:
        """Task accuracy (argmax vs labels) of reference and candidate, when labels were given."""
        if not self._labelled:
            return None
        return {k: v / self._labelled for k, v in self._correct.items()}
