"""Checks on a request's inputs before any compute: size, shapes, non-finite values, value ranges, texts.

Each failure is a RequestError naming the tensor, so it reaches the client as INVALID_ARG. Shapes: each tensor's
rank and fixed dims (batch dim first), one batch size across the request's tensors, and one length for every
dynamic dim that shares a name (`dim_names`), so a shape a rung would refuse is refused before any rung runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .batching import Batch
from .errors import RequestError
from .settings import TensorSignature


def request_bytes(arrays: Batch) -> int:
    """Bytes a request carries (texts: their UTF-8 lengths)."""
    total = 0
    for arr in arrays.values():
        if arr.dtype == object:
            total += sum(len(x) if isinstance(x, bytes) else len(str(x).encode()) for x in arr.ravel())
        else:
            total += arr.nbytes
    return total


def _layout(dims: Sequence[int], names: Iterable[str]) -> str:
    """[batch, sequence, 3]: the shape a tensor takes, its dynamic dims by name (-1 where unnamed)."""
    named = iter(names)
    return "[" + ", ".join(["batch"] + [next(named, "-1") if d == -1 else str(d) for d in dims]) + "]"


class InputChecks:
    """`tensors` as the build wrote them (`dims` per item, without the batch dim; -1: dynamic, named in order by
    `dim_names`). A tensor listed twice keeps its first shape. Only the tensors a request carries are checked."""

    def __init__(self, tensors: Sequence[TensorSignature], max_request_bytes: int, reject_nonfinite: bool) -> None:
        self.ranges = {t.name: t.range for t in tensors if t.range is not None}
        self.shapes: dict[str, tuple[list[int], list[str]]] = {}  # name -> (dims, dim_names)
        for t in tensors:
            if t.name not in self.shapes:
                self.shapes[t.name] = (list(t.dims), list(t.dim_names))
        self.max_request_bytes = int(max_request_bytes)
        self.reject_nonfinite = bool(reject_nonfinite)

    def check_size(self, arrays: Batch) -> None:
        size = request_bytes(arrays)
        if size > self.max_request_bytes:
            raise RequestError(
                f"request of {size} bytes exceeds the limit of {self.max_request_bytes} bytes (serving.max_request_bytes)"
            )

    def check_shapes(self, arrays: Batch) -> None:
        """Rank and fixed dims per tensor; batch size and every named dynamic dim's length across tensors."""
        seen: dict[str | None, tuple[str, int]] = {}  # None (the batch dim) or a dim name -> (tensor, length)
        for name, arr in arrays.items():
            spec = self.shapes.get(name)
            if spec is None:
                continue
            dims, dim_names = spec
            shape = list(arr.shape)
            if len(shape) != len(dims) + 1:
                raise RequestError(
                    f"input '{name}' has shape {shape} ({len(shape)} dims); it takes "
                    f"{_layout(dims, dim_names)} ({len(dims) + 1} dims)"
                )
            named = iter(dim_names)
            for axis, (want, got) in enumerate(zip([-1, *dims], shape, strict=True)):
                if axis and want != -1:
                    if got != want:
                        raise RequestError(
                            f"input '{name}' has shape {shape}; dim {axis} must be {want} (it takes {_layout(dims, dim_names)})"
                        )
                    continue
                key = next(named, None) if axis else None
                if axis and key is None:
                    continue  # an unnamed dynamic dim: any length
                other = seen.setdefault(key, (name, got))
                if other[1] != got:
                    if key is None:
                        raise RequestError(f"inputs '{other[0]}' and '{name}' have batch sizes {other[1]} and {got}")
                    if other[0] == name:
                        raise RequestError(
                            f"input '{name}' has shape {shape}: its dims named '{key}' must have "
                            f"one length, not {other[1]} and {got}"
                        )
                    raise RequestError(
                        f"inputs '{other[0]}' and '{name}' share dim '{key}' but have lengths {other[1]} and {got}"
                    )

    def check_values(self, arrays: Batch) -> None:
        """Non-finite floats and values outside a tensor's declared range."""
        for name, arr in arrays.items():
            if arr.dtype == object:
                continue
            if self.reject_nonfinite and arr.dtype.kind == "f":
                finite = np.isfinite(arr)
                if not finite.all():
                    raise RequestError(f"input '{name}' holds {int((~finite).sum())} NaN or Inf value(s)")
            bounds = self.ranges.get(name)
            if bounds is not None and arr.size:
                low, high = bounds
                lo, hi = arr.min(), arr.max()
                if lo < low or hi > high:
                    bad = int(((arr < low) | (arr > high)).sum())
                    raise RequestError(
                        f"input '{name}' holds {bad} value(s) outside its range [{low:g}, {high:g}] "
                        f"(smallest {lo:g}, largest {hi:g})"
                    )

    def check(self, arrays: Batch) -> None:
        self.check_size(arrays)
        self.check_shapes(arrays)
        self.check_values(arrays)


def texts_of(arr: np.ndarray, name: str, max_text_bytes: int) -> list[str]:
    """The UTF-8 texts of a BYTES tensor; a text over `max_text_bytes` or not UTF-8 is a RequestError."""
    out: list[str] = []
    for i, item in enumerate(arr.reshape(-1)):
        b = item if isinstance(item, bytes) else str(item).encode()
        if len(b) > max_text_bytes:
            raise RequestError(f"text {i} of input '{name}' is {len(b)} bytes; the limit is {max_text_bytes}")
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(f"text {i} of input '{name}' is not valid UTF-8") from None
    return out
