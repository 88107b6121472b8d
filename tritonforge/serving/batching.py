"""Batches from the requests Triton's dynamic batcher hands to one `execute`, and results split back.

Requests whose inputs agree in per-item shape and dtype are concatenated into one batch; each keeps its own
slice of the answer, so one bad request can be isolated from the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# One request's (or one batch's) tensors by name: what every stage of the serving logic passes on.
Batch = dict[str, np.ndarray]


def batch_size(arrays: Batch) -> int:
    return len(next(iter(arrays.values())))


def group_by_shape(arrays_per_request: Sequence[Batch], indices: Iterable[int] | None = None) -> list[list[int]]:
    """Lists of request indices (from `indices`, default all) with equal per-item shapes and dtypes."""
    groups: dict[tuple[tuple[str, tuple[int, ...], str], ...], list[int]] = {}
    for i in range(len(arrays_per_request)) if indices is None else indices:
        arrays = arrays_per_request[i]
        key = tuple((name, a.shape[1:], a.dtype.str) for name, a in sorted(arrays.items()))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def concat(arrays_per_request: Sequence[Batch], indices: Sequence[int]) -> tuple[Batch, list[int]]:
    """One batch from the requests at `indices`, and each request's batch size."""
    if len(indices) == 1:
        arrays = arrays_per_request[indices[0]]
        return dict(arrays), [batch_size(arrays)]
    sizes = [batch_size(arrays_per_request[i]) for i in indices]
    names = arrays_per_request[indices[0]].keys()
    return {n: np.concatenate([arrays_per_request[i][n] for i in indices]) for n in names}, sizes


def split(outputs: Batch, sizes: Sequence[int]) -> list[Batch]:
    """Per-request slices of a batch of outputs."""
    parts: list[Batch] = []
    start = 0
    for size in sizes:
        parts.append({n: v[start : start + size] for n, v in outputs.items()})
        start += size
    return parts
