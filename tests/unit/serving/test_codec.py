"""The cache value codec refuses what it did not write: other secrets, other keys, other shapes, bombs."""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from tritonforge.serving.codec import MAGIC, Codec, InvalidValue, cache_key

OUTPUTS = [("emb", np.float32, (384,)), ("label", np.int64, (1,))]


def _codec(secret=b"s" * 32, max_entry=16 * 2**20):
    return Codec(secret, OUTPUTS, max_entry)


def _answer(rows=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"emb": rng.standard_normal((rows, 384)).astype(np.float32), "label": np.arange(rows, dtype=np.int64)[:, None]}


def test_key_covers_name_version_dtype_shape_and_bytes():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = cache_key("m", "v1", {"x": x})
    assert base == cache_key("m", "v1", {"x": x.copy()})
    assert base != cache_key("m", "v2", {"x": x})
    assert base != cache_key("n", "v1", {"x": x})
    assert base != cache_key("m", "v1", {"y": x})
    assert base != cache_key("m", "v1", {"x": x.reshape(3, 2)})  # same bytes, other shape
    assert base != cache_key("m", "v1", {"x": x.view(np.int32)})  # same bytes, other dtype
    assert cache_key("m", "v1", {"x": x}, prefix="p:").startswith("p:")
    texts = np.array([[b"ab"], [b"c"]], dtype=object)
    assert cache_key("m", "1", {"t": texts}) != cache_key("m", "1", {"t": np.array([[b"a"], [b"bc"]], dtype=object)})


def test_round_trip_is_exact_and_compressed():
    codec, answer = _codec(), _answer()
    value = codec.encode("k", answer)
    back = codec.decode("k", value, 2)
    for name, arr in answer.items():
        assert back[name].dtype == arr.dtype and back[name].tobytes() == arr.tobytes()
    zeros = {"emb": np.zeros((64, 384), np.float32), "label": np.zeros((64, 1), np.int64)}
    assert len(codec.encode("k", zeros)) < 64 * 384 * 4 / 50


def test_a_value_written_with_another_secret_is_refused():
    value = _codec(b"attacker").encode("k", _answer())
    with pytest.raises(InvalidValue) as e:
        _codec().decode("k", value, 2)
    assert e.value.reason == "authentication"


def test_a_value_copied_from_another_key_is_refused():
    codec = _codec()
    with pytest.raises(InvalidValue) as e:
        codec.decode("other-key", codec.encode("k", _answer()), 2)
    assert e.value.reason == "authentication"


def test_a_value_for_another_batch_size_is_refused_even_when_authentic():
    codec = _codec()
    with pytest.raises(InvalidValue) as e:
        codec.decode("k", codec.encode("k", _answer(rows=5)), 1)
    assert e.value.reason in ("size", "shape")


def test_an_authentic_value_of_another_shape_or_dtype_is_refused():
    codec = _codec()
    wrong_dims = Codec(codec.secret, [("emb", np.float32, (10,)), ("label", np.int64, (1,))], 2**20)
    with pytest.raises(InvalidValue) as e:
        codec.decode("k", wrong_dims.encode("k", {"emb": np.zeros((2, 10), np.float32), "label": np.zeros((2, 1), np.int64)}), 2)
    assert e.value.reason == "shape"
    wrong_dtype = Codec(codec.secret, [("emb", np.float64, (384,)), ("label", np.int64, (1,))], 2**20)
    value = wrong_dtype.encode("k", {"emb": np.zeros((2, 384), np.float64), "label": np.zeros((2, 1), np.int64)})
    with pytest.raises(InvalidValue):
        codec.decode("k", value, 2)


def test_a_zlib_bomb_is_refused_in_bounded_memory():
    """An authentic-looking value that inflates to 1 GiB: refused after at most what a batch of 1 can take."""
    codec = _codec()
    payload = zlib.compress(b"\0" * 2**30, 9)  # ~1 MiB compressed
    value = MAGIC + codec._tag("k", payload) + payload
    tracemalloc.start()
    with pytest.raises(InvalidValue) as e:
        codec.decode("k", value, 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert e.value.reason == "size"
    assert peak < 16 * 2**20


@pytest.mark.parametrize("bad", [b"", b"junk", MAGIC + b"x" * 40, MAGIC + b"\0" * 32 + zlib.compress(b"[]")])
def test_malformed_values_are_refused(bad):
    with pytest.raises(InvalidValue):
        _codec().decode("k", bad, 1)


def test_object_dtypes_smuggled_into_an_authentic_header_are_refused():
    codec = _codec()
    head = json.dumps(
        [
            {"name": "emb", "dtype": "|O", "shape": [1, 384], "nbytes": 8},
            {"name": "label", "dtype": "<i8", "shape": [1, 1], "nbytes": 8},
        ]
    ).encode()
    payload = zlib.compress(struct.pack("<I", len(head)) + head + b"\0" * 16)
    with pytest.raises(InvalidValue):
        codec.decode("k", MAGIC + codec._tag("k", payload) + payload, 1)


def test_answers_larger_than_the_entry_limit_are_not_stored():
    assert Codec(b"s", OUTPUTS, 1000).encode("k", _answer(rows=4)) is None


def test_strings_round_trip():
    codec = Codec(b"s", [("names", object, (1,))], 2**20)
    names = np.array([[b"x"], [b"yz"]], dtype=object)
    back = codec.decode("k", codec.encode("k", {"names": names}), 2)
    assert back["names"].tolist() == names.tolist()
