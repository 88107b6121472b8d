"""Run models over a dataset and compare them with a reference, output by output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tritonforge.builder.data import Dataset
from tritonforge.serving.agreement import Comparator, OutputMetrics
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec


@dataclass
class Outputs:
    """A model's outputs on every batch of a dataset, in order."""

    batches: list[Batch]


def run_over(run: Callable[[Batch], Batch], data: Dataset) -> Outputs:
    return Outputs([run(batch) for batch in data])


def rebatch_outputs(outputs: Outputs, size: int) -> Outputs:
    """The same outputs cut into batches of at most `size`, as Dataset.rebatch cuts the inputs."""
    out = []
    for batch in outputs.batches:
        n = len(next(iter(batch.values())))
        out += [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]
    return Outputs(out)


@dataclass
class Comparison:
    """Metrics of a candidate against the reference; `within_tolerance` when every element passes atol/rtol."""

    outputs: dict[str, OutputMetrics]
    accuracy: dict[str, float] | None
    atol: float
    rtol: float

    @property
    def within_tolerance(self) -> bool:
        return all(m.violation <= 1.0 and m.nonfinite == 0 for m in self.outputs.values())

    def summary(self) -> str:
        parts = [
            f"'{m.name}': max abs {m.max_abs:.3g}, max rel {m.max_rel:.3g}, min cosine {m.min_cosine:.6f}"
            for m in self.outputs.values()
        ]
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "within_tolerance": self.within_tolerance,
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
            "accuracy": self.accuracy,
        }


def compare(spec: BuildSpec, data: Dataset, reference: Outputs, candidate: Outputs, atol: float, rtol: float) -> Comparison:
    """Compare two runs over the same dataset."""
    class_outputs = spec.class_score_outputs
    comp = Comparator([t.name for t in spec.outputs], atol, rtol, class_outputs)
    cls = class_outputs[0] if class_outputs and data.labels is not None else None
    for i, (ref, cand) in enumerate(zip(reference.batches, candidate.batches, strict=True)):
        comp.add(ref, cand, data.labels[i] if data.labels is not None else None, cls)
    return Comparison(comp.results(), comp.accuracy(), atol, rtol)
