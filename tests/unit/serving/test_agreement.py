"""Output comparison metrics: exact numbers on small hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from tritonforge.serving.agreement import Comparator


def test_identical_outputs():
    ref = {"y": np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)}
    c = Comparator(["y"], atol=1e-5, rtol=1e-5, class_outputs=["y"])
    c.add(ref, ref, labels=np.array([2, 0]), classifier_output="y")
    m = c.results()["y"]
    assert m.max_abs == 0 and m.violation == 0 and m.min_cosine == pytest.approx(1.0)
    assert m.top1_agreement == 1.0
    assert c.accuracy() == {"reference": 1.0, "candidate": 1.0}


def test_errors_and_top1_flip():
    ref = {"y": np.array([[1.0, 2.0], [4.0, 1.0]])}
    cand = {"y": np.array([[1.0, 2.5], [1.0, 4.0]])}
    c = Comparator(["y"], atol=0.1, rtol=0.0, class_outputs=["y"])
    c.add(ref, cand, labels=np.array([1, 0]), classifier_output="y")
    m = c.results()["y"]
    assert m.max_abs == pytest.approx(3.0)
    assert m.violation == pytest.approx(30.0)  # 3.0 / (0.1 + 0)
    assert m.top1_agreement == 0.5
    assert m.mean_rel == pytest.approx((0.5 + 3 + 3) / (1 + 2 + 4 + 1))
    assert c.accuracy() == {"reference": 1.0, "candidate": 0.5}
    assert m.min_cosine < 0.9


def test_nan_in_candidate_fails():
    ref = {"y": np.ones((2, 3), np.float32)}
    cand = {"y": np.array([[1, np.nan, 1], [1, 1, 1]], np.float32)}
    c = Comparator(["y"], atol=1e-3, rtol=1e-3)
    c.add(ref, cand)
    m = c.results()["y"]
    assert m.nonfinite == 1 and m.violation == np.inf


def test_shape_mismatch_is_an_error():
    c = Comparator(["y"], atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        c.add({"y": np.ones((2, 3))}, {"y": np.ones((2, 4))})


def test_top1_only_for_class_score_outputs():
    emb = {"e": np.array([[0.1, 0.9], [0.8, 0.2]])}
    c = Comparator(["e"], atol=1e-3, rtol=1e-3)
    c.add(emb, {"e": emb["e"][:, ::-1]})
    m = c.results()["e"]
    assert m.top1_agreement is None and not m.class_scores
