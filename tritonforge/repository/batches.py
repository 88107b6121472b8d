"""Batches of arrays in one .npz a build leaves in the repository (reference outputs, public inputs), read back
by the recheck and by perf: keys 'b{i}/{name}', strings stored as unicode, never pickled."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritonforge.serving.batching import Batch

LABELS_KEY = "__labels__"


def save_batches(path: Path, batches: list[Batch], labels: list[np.ndarray] | None = None) -> None:
    """Batches as keys 'b{i}/{name}' (labels as 'b{i}/__labels__'); strings stored as unicode, not objects."""
    arrays: dict[str, np.ndarray] = {}
    for i, batch in enumerate(batches):
        for name, arr in batch.items():
            arrays[f"b{i:05d}/{name}"] = arr.astype(np.str_) if arr.dtype == object else arr
        if labels is not None:
            arrays[f"b{i:05d}/{LABELS_KEY}"] = labels[i]
    with open(path, "wb") as f:  # a file object: np.savez_compressed would append '.npz' to a bare name
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy's stub: **arrays might bind allow_pickle


def load_batches(path: Path) -> tuple[list[Batch], list[np.ndarray] | None]:
    """Inverse of save_batches (no pickle)."""
    with np.load(path, allow_pickle=False) as npz:
        grouped: dict[str, Batch] = {}
        for key in sorted(npz.files):
            prefix, _, name = key.partition("/")
            arr = npz[key]
            grouped.setdefault(prefix, {})[name] = arr.astype(object) if arr.dtype.kind == "U" else arr
    batches = [grouped[k] for k in sorted(grouped)]
    labels = [b.pop(LABELS_KEY) for b in batches] if batches and LABELS_KEY in batches[0] else None
    return batches, labels
