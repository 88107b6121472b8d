"""Validation data loading: npz without pickle, callables, and clear errors on what does not fit the spec."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import digits_spec_copy

from tritonforge.builder.data import load_dataset
from tritonforge.errors import DataError
from tritonforge.spec import DataSpec, load_spec


@pytest.fixture
def spec(tmp_path, digits_spec):
    return load_spec(digits_spec_copy(tmp_path))


def _load(spec, **kw):
    return load_dataset(spec, DataSpec(**kw), "validation.data")


def test_npz_with_labels(spec, tmp_path):
    np.savez(tmp_path / "d.npz", image=np.zeros((5, 64), np.float64), label=np.arange(5))
    ds = _load(spec, npz=tmp_path / "d.npz", labels="label")
    assert len(ds) == 5
    assert ds.batches[0]["image"].dtype == np.float32  # float64 -> float32 is a same-kind cast
    assert ds.all_labels.tolist() == [0, 1, 2, 3, 4]


def test_rebatch_and_cap(spec, tmp_path):
    np.savez(tmp_path / "d.npz", image=np.ones((10, 64), np.float32))
    ds = _load(spec, npz=tmp_path / "d.npz", max_samples=7)
    assert len(ds) == 7
    assert [len(b["image"]) for b in ds.rebatch(3)] == [3, 3, 1]


def test_pickled_npz_is_refused(spec, tmp_path):
    np.savez(tmp_path / "p.npz", image=np.array([object()] * 3, dtype=object))
    with pytest.raises(DataError, match="cannot read without pickle"):
        _load(spec, npz=tmp_path / "p.npz")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"img": np.zeros((2, 64), np.float32)}, "no array for input 'image'"),
        ({"image": np.zeros((2, 63), np.float32)}, r"tensor 'image' has shape \[2, 63\]"),
        ({"image": np.zeros((2, 64), np.complex64)}, "dtype complex64"),
        ({"image": np.zeros((0, 64), np.float32)}, "holds no samples"),
        ({"image": np.zeros((3, 64), np.float32), "label": np.zeros(2, np.int64)}, "disagree on the number of samples"),
    ],
)
def test_bad_npz_contents(spec, tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    labels = "label" if "label" in arrays else None
    with pytest.raises(DataError, match=message):
        _load(spec, npz=tmp_path / "d.npz", labels=labels)


def test_unreadable_file(spec, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        _load(spec, npz=tmp_path / "junk.npz")


def test_callable_batches(spec, tmp_path):
    (tmp_path / "my_batches.py").write_text(
        "import numpy as np\ndef batches():\n    for i in range(3):\n        yield {'image': np.full((4, 64), i, np.float32)}\n"
    )
    ds = _load(spec, callable="my_batches:batches")
    assert len(ds) == 12 and len(ds.batches) == 3
    assert ds.fingerprint() == _load(spec, callable="my_batches:batches").fingerprint()


def _tokens_spec():
    from tritonforge.spec import parse_spec

    return parse_spec(
        {
            "name": "t",
            "source": {"kind": "onnx", "path": "m.onnx"},
            "max_batch_size": 8,
            "inputs": [{"name": "ids", "dtype": "int64", "shape": [-1], "dim_names": ["sequence"]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
            "validation": {"data": {"npz": "v.npz", "labels": "label"}},
        }
    )


def test_npz_batches_of_their_own_lengths(tmp_path):
    """PREFIX/NAME keys: one batch per prefix, each at its own sequence length, labels per batch."""
    np.savez(
        tmp_path / "v.npz",
        **{
            "short/ids": np.ones((3, 5), np.int64),
            "short/label": np.arange(3),
            "long/ids": np.ones((2, 40), np.int64),
            "long/label": np.arange(2),
        },
    )
    ds = load_dataset(_tokens_spec(), DataSpec(npz=tmp_path / "v.npz", labels="label"), "validation.data")
    assert sorted(b["ids"].shape for b in ds.batches) == [(2, 40), (3, 5)]
    assert len(ds) == 5 and sorted(ds.all_labels.tolist()) == [0, 0, 1, 1, 2]


def test_an_npz_batch_missing_an_input_is_named(tmp_path):
    np.savez(tmp_path / "v.npz", **{"a/ids": np.ones((3, 5), np.int64), "a/label": np.arange(3), "b/label": np.arange(2)})
    with pytest.raises(DataError, match=r"batch 'b'.*ids"):
        load_dataset(_tokens_spec(), DataSpec(npz=tmp_path / "v.npz", labels="label"), "validation.data")
