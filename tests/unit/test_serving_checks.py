"""Input checks name the tensor and the limit; they run before any compute."""

from __future__ import annotations

import numpy as np
import pytest

from tritonforge.serving.checks import InputChecks, request_bytes, texts_of
from tritonforge.serving.errors import RequestError

TENSORS = [{"name": "ids", "dtype": "int64", "range": [0, 99]}, {"name": "x", "dtype": "float32", "range": None}]


def test_values_outside_the_declared_range_are_refused_with_the_range():
    checks = InputChecks(TENSORS, 1 << 20, True)
    checks.check({"ids": np.array([[0, 99]]), "x": np.zeros((1, 2), np.float32)})
    with pytest.raises(RequestError, match=r"input 'ids' holds 1 value\(s\) outside its range \[0, 99\] \(smallest 3, largest 15613\)"):
        checks.check({"ids": np.array([[3, 15613]]), "x": np.zeros((1, 2), np.float32)})
    with pytest.raises(RequestError, match="outside its range"):
        checks.check({"ids": np.array([[-1]]), "x": np.zeros((1, 2), np.float32)})


def test_non_finite_values_are_refused_unless_allowed():
    x = np.zeros((1, 4), np.float32)
    x[0, 1], x[0, 2] = np.nan, np.inf
    with pytest.raises(RequestError, match="input 'x' holds 2 NaN or Inf"):
        InputChecks(TENSORS, 1 << 20, True).check({"x": x})
    InputChecks(TENSORS, 1 << 20, False).check({"x": x})


def test_requests_over_the_size_limit_are_refused_naming_the_limit():
    with pytest.raises(RequestError, match=r"request of 4096 bytes exceeds the limit of 1000 bytes \(serving.max_request_bytes\)"):
        InputChecks(TENSORS, 1000, True).check({"x": np.zeros((1, 1024), np.float32)})
    assert request_bytes({"t": np.array([[b"abc"], ["d\u00e9"]], dtype=object)}) == 6


def test_texts_must_be_utf8_and_within_their_limit():
    assert texts_of(np.array([[b"hi"], ["th\u00e9"]], dtype=object), "text", 10) == ["hi", "th\u00e9"]
    with pytest.raises(RequestError, match="text 0 of input 'text' is 11 bytes; the limit is 10"):
        texts_of(np.array([[b"x" * 11]], dtype=object), "text", 10)
    with pytest.raises(RequestError, match="text 1 of input 'text' is not valid UTF-8"):
        texts_of(np.array([[b"ok"], [b"\xff\xfe"]], dtype=object), "text", 10)
