"""Checks on a request's inputs before any compute: size, non-finite values, value ranges, texts.

Each failure is a RequestError naming the tensor, so it reaches the client as INVALID_ARG.
"""

import numpy as np

from .errors import RequestError


def request_bytes(arrays):
    """Bytes a request carries (texts: their UTF-8 lengths)."""
    total = 0
    for arr in arrays.values():
        if arr.dtype == object:
            total += sum(len(x) if isinstance(x, bytes) else len(str(x).encode()) for x in arr.ravel())
        else:
            total += arr.nbytes
    return total


class InputChecks:
    """`tensors`: [{"name", "dtype", "range": [low, high] or None}] as the build wrote them."""

    def __init__(self, tensors, max_request_bytes, reject_nonfinite):
        self.ranges = {t["name"]: t["range"] for t in tensors if t.get("range") is not None}
        self.max_request_bytes = int(max_request_bytes)
        self.reject_nonfinite = bool(reject_nonfinite)

    def check_size(self, arrays):
        size = request_bytes(arrays)
        if size > self.max_request_bytes:
            raise RequestError(f"request of {size} bytes exceeds the limit of {self.max_request_bytes} bytes "
                               "(serving.max_request_bytes)")

    def check_values(self, arrays):
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
                    raise RequestError(f"input '{name}' holds {bad} value(s) outside its range [{low:g}, {high:g}] "
                                       f"(smallest {lo:g}, largest {hi:g})")

    def check(self, arrays):
        self.check_size(arrays)
        self.check_values(arrays)


def texts_of(arr, name, max_text_bytes):
    """The UTF-8 texts of a BYTES tensor; a text over `max_text_bytes` or not UTF-8 is a RequestError."""
    out = []
    for i, item in enumerate(arr.reshape(-1)):
        b = item if isinstance(item, bytes) else str(item).encode()
        if len(b) > max_text_bytes:
            raise RequestError(f"text {i} of input '{name}' is {len(b)} bytes; the limit is {max_text_bytes}")
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(f"text {i} of input '{name}' is not valid UTF-8") from None
    return out
