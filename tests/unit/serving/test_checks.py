"""Input checks name the tensor and the limit; they run before any compute."""

from __future__ import annotations

import numpy as np
import pytest

from tritonforge.serving.checks import InputChecks, request_bytes, texts_of
from tritonforge.serving.errors import RequestError
from tritonforge.serving.settings import TensorSignature


def _signatures(tensors):
    """The tensors as the public model reads them from its settings."""
    return [TensorSignature.from_json(t, "m") for t in tensors]


TENSORS = _signatures(
    [
        {"name": "ids", "dtype": "int64", "dims": [-1], "dim_names": [], "range": [0, 99]},
        {"name": "x", "dtype": "float32", "dims": [-1], "dim_names": [], "range": None},
    ]
)


def test_values_outside_the_declared_range_are_refused_with_the_range():
    checks = InputChecks(TENSORS, 1 << 20, True)
    checks.check({"ids": np.array([[0, 99]]), "x": np.zeros((1, 2), np.float32)})
    with pytest.raises(
        RequestError, match=r"input 'ids' holds 1 value\(s\) outside its range \[0, 99\] \(smallest 3, largest 15613\)"
    ):
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
    with pytest.raises(
        RequestError, match=r"request of 4096 bytes exceeds the limit of 1000 bytes \(serving.max_request_bytes\)"
    ):
        InputChecks(TENSORS, 1000, True).check({"x": np.zeros((1, 1024), np.float32)})
    assert request_bytes({"t": np.array([[b"abc"], ["d\u00e9"]], dtype=object)}) == 6


def test_texts_must_be_utf8_and_within_their_limit():
    assert texts_of(np.array([[b"hi"], ["th\u00e9"]], dtype=object), "text", 10) == ["hi", "th\u00e9"]
    with pytest.raises(RequestError, match="text 0 of input 'text' is 11 bytes; the limit is 10"):
        texts_of(np.array([[b"x" * 11]], dtype=object), "text", 10)
    with pytest.raises(RequestError, match="text 1 of input 'text' is not valid UTF-8"):
        texts_of(np.array([[b"ok"], [b"\xff\xfe"]], dtype=object), "text", 10)


BERT = _signatures(
    [
        {"name": "input_ids", "dtype": "int64", "dims": [-1], "dim_names": ["sequence"], "range": [0, 30521]},
        {"name": "attention_mask", "dtype": "int64", "dims": [-1], "dim_names": ["sequence"], "range": [0, 1]},
        {"name": "pixels", "dtype": "float32", "dims": [3, -1, -1], "dim_names": ["height"], "range": None},
    ]
)


def _ids(batch, length):
    return np.zeros((batch, length), np.int64)


def test_inputs_that_share_a_dim_name_must_agree_on_its_length():
    """The issue's request: attention_mask of 12 beside input_ids of 10 reached the rung, which failed it."""
    checks = InputChecks(BERT, 1 << 20, True)
    checks.check({"input_ids": _ids(2, 10), "attention_mask": _ids(2, 10)})
    with pytest.raises(
        RequestError, match="inputs 'input_ids' and 'attention_mask' share dim 'sequence' but have lengths 10 and 12"
    ):
        checks.check({"input_ids": _ids(1, 10), "attention_mask": _ids(1, 12)})
    with pytest.raises(RequestError, match="inputs 'input_ids' and 'attention_mask' have batch sizes 2 and 1"):
        checks.check({"input_ids": _ids(2, 10), "attention_mask": _ids(1, 10)})


def test_a_wrong_rank_or_fixed_dim_is_refused_naming_the_shape_it_takes():
    checks = InputChecks(BERT, 1 << 20, True)
    checks.check({"pixels": np.zeros((1, 3, 4, 5), np.float32)})  # the unnamed dynamic dim takes any length
    with pytest.raises(
        RequestError,
        match=r"input 'input_ids' has shape \[10\] \(1 dims\); it takes "
        r"\[batch, sequence\] \(2 dims\)",
    ):
        checks.check({"input_ids": np.zeros(10, np.int64)})
    with pytest.raises(
        RequestError,
        match=r"input 'pixels' has shape \[1, 4, 4, 5\]; dim 1 must be 3 "
        r"\(it takes \[batch, 3, height, -1\]\)",
    ):
        checks.check({"pixels": np.zeros((1, 4, 4, 5), np.float32)})


def test_only_what_the_request_carries_is_checked():
    """With a tokenizer the request carries texts; the model inputs the tokenizer makes are not the client's."""
    text = _signatures([{"name": "text", "dtype": "string", "dims": [1], "dim_names": [], "range": None}])
    checks = InputChecks(text + BERT, 1 << 20, True)
    checks.check({"text": np.array([[b"hello"], [b"hi"]], dtype=object)})
    with pytest.raises(RequestError, match=r"input 'text' has shape \[2, 2\]; dim 1 must be 1"):
        checks.check({"text": np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object)})
