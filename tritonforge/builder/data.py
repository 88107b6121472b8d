"""Validation and calibration data: loaded from .npz (never pickled) or a 'module:callable', checked against the spec."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritonforge import dtypes
from tritonforge.errors import DataError
from tritonforge.repository.batches import load_batches, save_batches  # the .npz format perf reads too
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec, DataSpec, TensorSpec
from tritonforge.spec.refs import import_callable


@dataclass
class Dataset:
    """Batches of model inputs (each array with a leading batch axis), and optional labels per batch."""

    batches: list[Batch]
    labels: list[np.ndarray] | None = None
    origin: str = ""
    _fingerprint: str = field(default="", repr=False)

    def __len__(self) -> int:
        return sum(len(next(iter(b.values()))) for b in self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    @property
    def all_labels(self) -> np.ndarray | None:
        return None if self.labels is None else np.concatenate(self.labels)

    def fingerprint(self) -> str:
        """sha256 over every array's name, dtype, shape and bytes."""
        if not self._fingerprint:
            h = hashlib.sha256()
            for i, batch in enumerate(self.batches):
                items = list(batch.items())
                if self.labels is not None:
                    items.append(("__labels__", self.labels[i]))
                for name, arr in items:
                    h.update(f"{i}:{name}:{arr.dtype.str}:{arr.shape}".encode())
                    h.update(_array_bytes(arr))
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def sample_hashes(self) -> set[str]:
        """One hash per sample (over every input's row), to find samples two datasets share."""
        out = set()
        for batch in self.batches:
            n = len(next(iter(batch.values())))
            for i in range(n):
                h = hashlib.sha256()
                for name in sorted(batch):
                    h.update(name.encode() + _array_bytes(np.asarray(batch[name][i])))
                out.add(h.hexdigest())
        return out

    def rebatch(self, size: int) -> Dataset:
        """The same samples cut into batches of at most `size` (batches are never merged)."""
        batches: list[Batch] = []
        labels: list[np.ndarray] | None = [] if self.labels is not None else None
        for i, batch in enumerate(self.batches):
            n = len(next(iter(batch.values())))
            for start in range(0, n, size):
                batches.append({k: v[start : start + size] for k, v in batch.items()})
                if labels is not None:
                    labels.append(self.labels[i][start : start + size])  # type: ignore[index]
        return Dataset(batches, labels, self.origin)

    def save_npz(self, path: Path) -> None:
        """Write the batches (and labels) to one .npz that loads without pickle."""
        save_batches(path, self.batches, self.labels)

    @classmethod
    def load_npz(cls, path: Path) -> Dataset:
        batches, labels = load_batches(path)
        return cls(batches, labels, str(path))


def _array_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype == object:
        return "\x1f".join(x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel()).encode()
    return np.ascontiguousarray(arr).tobytes()


def _coerce(arr: np.ndarray, tensor: TensorSpec, where: str) -> np.ndarray:
    want = dtypes.by_name(tensor.dtype)
    if want.name == "string":
        if arr.dtype.kind not in ("U", "S", "O"):
            raise DataError(f"{where}: tensor '{tensor.name}' must hold strings, got dtype {arr.dtype}")
        arr = arr.astype(object)
    elif arr.dtype != want.numpy:
        if not np.can_cast(arr.dtype, want.numpy, casting="same_kind"):
            raise DataError(f"{where}: tensor '{tensor.name}' has dtype {arr.dtype}, the spec says {tensor.dtype}")
        arr = arr.astype(want.numpy)
    item_shape = arr.shape[1:]
    if arr.ndim != len(tensor.shape) + 1 or any(s != -1 and s != a for s, a in zip(tensor.shape, item_shape, strict=True)):
        raise DataError(
            f"{where}: tensor '{tensor.name}' has shape {list(arr.shape)}; the spec says [batch] + {tensor.shape} (-1 = any)"
        )
    return arr


def _check_batch(
    raw: dict[str, np.ndarray], spec: BuildSpec, labels_key: str | None, where: str
) -> tuple[Batch, np.ndarray | None]:
    batch: Batch = {}
    for tensor in spec.inputs:
        if tensor.name not in raw:
            raise DataError(f"{where}: no array for input '{tensor.name}' (found: {sorted(raw)})")
        batch[tensor.name] = _coerce(np.asarray(raw[tensor.name]), tensor, where)
    labels = None
    if labels_key is not None:
        if labels_key not in raw:
            raise DataError(f"{where}: no labels array '{labels_key}' (found: {sorted(raw)})")
        labels = np.asarray(raw[labels_key])
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{where}: labels '{labels_key}' must be a 1-D integer array, got {labels.dtype}{list(labels.shape)}")
    sizes = {len(v) for v in batch.values()} | ({len(labels)} if labels is not None else set())
    if len(sizes) != 1:
        raise DataError(f"{where}: inputs and labels disagree on the number of samples: {sorted(sizes)}")
    if sizes == {0}:
        raise DataError(f"{where}: holds no samples")
    return batch, labels


def _npz_batches(raw: dict[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """One batch per key prefix when the keys are PREFIX/NAME (batches of their own lengths: b0/input_ids,
    b0/attention_mask, b1/input_ids, ...), else the whole file as one batch."""
    if not raw or not all("/" in k for k in raw):
        return [("", raw)]
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key in sorted(raw):
        prefix, _, name = key.partition("/")
        grouped.setdefault(prefix, {})[name] = raw[key]
    return list(grouped.items())


def load_dataset(spec: BuildSpec, data: DataSpec, field_name: str) -> Dataset:
    """Load `data` (a spec section named `field_name` for errors), checked against the spec's inputs."""
    batches: list[Batch] = []
    labels: list[np.ndarray] = []
    if data.npz is not None:
        path = spec.resolve(data.npz)
        where = f"{field_name}.npz ({path})"
        if path.is_file() and not zipfile.is_zipfile(path):
            raise DataError(f"{where}: not a readable .npz file (not a zip archive)")
        try:
            with np.load(path, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in npz.files}
        except FileNotFoundError:
            raise DataError(f"{where}: file not found") from None
        except ValueError as e:
            raise DataError(f"{where}: cannot read without pickle ({e}); store strings as unicode arrays") from None
        except Exception as e:  # zipfile.BadZipFile, OSError, EOFError ...
            raise DataError(f"{where}: not a readable .npz file: {e}") from None
        for prefix, group in _npz_batches(raw):
            batch, lab = _check_batch(group, spec, data.labels, f"{where} batch '{prefix}'" if prefix else where)
            batches.append(batch)
            if lab is not None:
                labels.append(lab)
        origin = str(path)
    else:
        assert data.callable is not None
        where = f"{field_name}.callable ({data.callable})"
        fn = import_callable(data.callable, spec.base_dir, f"{field_name}.callable")
        try:
            produced = list(fn())
        except Exception as e:
            raise DataError(f"{where}: raised {type(e).__name__}: {e}") from None
        for i, raw in enumerate(produced):
            if not isinstance(raw, dict):
                raise DataError(f"{where}: batch {i} is a {type(raw).__name__}, expected a dict of arrays")
            batch, lab = _check_batch(raw, spec, data.labels, f"{where} batch {i}")
            batches.append(batch)
            if lab is not None:
                labels.append(lab)
        if not batches:
            raise DataError(f"{where}: yielded no batches")
        origin = data.callable
    ds = Dataset(batches, labels if data.labels is not None else None, origin)
    return _cap(ds, data.max_samples)


def _cap(ds: Dataset, max_samples: int) -> Dataset:
    if len(ds) <= max_samples:
        return ds
    out: list[Batch] = []
    out_labels: list[np.ndarray] | None = [] if ds.labels is not None else None
    left = max_samples
    for i, batch in enumerate(ds.batches):
        if left <= 0:
            break
        n = len(next(iter(batch.values())))
        take = min(n, left)
        out.append({k: v[:take] for k, v in batch.items()})
        if out_labels is not None:
            out_labels.append(ds.labels[i][:take])  # type: ignore[index]
        left -= take
    return Dataset(out, out_labels, ds.origin)
