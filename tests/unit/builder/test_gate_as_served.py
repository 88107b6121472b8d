"""The gate checks a variant on held-out samples as served too (texts padded to the serving buckets, batched and
one request at a time): a variant that passes on the validation batches but not as served is rejected, and says
which form failed. Built by construction: a run that is wrong only on the served form."""

from __future__ import annotations

import numpy as np

from tritonforge.builder.data import Dataset
from tritonforge.builder.variants import ServedData, check_variant
from tritonforge.builder.verify import run_over
from tritonforge.spec import parse_spec

SPEC = parse_spec(
    {
        "name": "m",
        "source": {"kind": "onnx", "path": "m.onnx"},
        "max_batch_size": 8,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}],
        "validation": {"data": {"npz": "v.npz"}},
        "gate": {"min_cosine": 0.99},
    }
)
RNG = np.random.default_rng(0)
VALIDATION = Dataset([{"x": RNG.normal(size=(4, 6)).astype(np.float32)} for _ in range(2)])
# as served: padded to a wider bucket with zeros
SERVED = Dataset([{"x": np.pad(b["x"], ((0, 0), (0, 10)))} for b in VALIDATION.batches])


def exact(batch):
    x = batch["x"]
    return {"y": np.stack([x.sum(1), (x**2).sum(1), x.max(1)], axis=1)}


def wrong_when_padded(batch):
    out = exact(batch)
    return {"y": -out["y"]} if batch["x"].shape[1] > 6 else out


def wrong_alone(batch):
    out = exact(batch)
    return {"y": -out["y"]} if len(batch["x"]) == 1 and batch["x"].shape[1] > 6 else out


def _check(run, batch_dependent, served=True):
    reference = run_over(exact, VALIDATION)
    data = ServedData(SERVED, run_over(exact, SERVED)) if served else None
    return check_variant(SPEC, VALIDATION, reference, run, batch_dependent, served=data)


def test_a_variant_wrong_only_as_served_is_rejected_and_says_so():
    assert _check(wrong_when_padded, False, served=False)[1].passed  # the validation batches alone pass it
    _comparison, gate, notes = _check(wrong_when_padded, False)
    assert not gate.passed
    assert any(n.startswith("failed as served (padded to the serving buckets): min cosine") for n in notes)


def test_a_batch_dependent_variant_is_checked_one_request_at_a_time_as_served():
    assert _check(wrong_alone, False)[1].passed  # batched as served it is right
    _comparison, gate, notes = _check(wrong_alone, True)
    assert not gate.passed and any(n.startswith("failed as served, one request at a time") for n in notes)


def test_an_exact_variant_passes_every_form():
    _comparison, gate, notes = _check(exact, True)
    assert gate.passed and [n for n in notes if n.startswith("gated as served")] == [
        "gated as served (padded to the serving buckets): worst cosine 1.00000",
        "gated as served, one request at a time: worst cosine 1.00000",
    ]
