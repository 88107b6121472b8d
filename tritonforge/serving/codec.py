"""Cache keys and values of the response cache. Nothing read from a store is trusted before it is checked.

Key: sha256 over model name, model version and, for each input in name order, its name, dtype, shape and bytes
(Triton's own response cache ignores shape and dtype; this one does not).
Value: b"TFC2" + HMAC-SHA256(secret, key + payload) + payload, payload = zlib(header + raw tensor bytes). The
header lists each output's name, dtype, shape and byte length. Reading a value checks, in this order and before
anything is allocated for it: its length, its tag (so a value written without the replicas' secret, or copied
from another key, is refused), the inflated size (zlib inflates to at most what the model's outputs at this
batch size take), then every header entry against the model config. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike

from .batching import Batch

MAGIC = b"TFC2"
TAG_BYTES = 32
MAX_HEADER_BYTES = 4096
_NUMERIC_KINDS = "biuf"

Reason = Literal["format", "authentication", "size", "shape"]
REASONS: tuple[Reason, ...] = ("format", "authentication", "size", "shape")


class InvalidValue(ValueError):
    """A stored value that must not be served; `reason` is one of format, authentication, size, shape."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def cache_key(model: str, version: str, inputs: Mapping[str, np.ndarray], prefix: str = "") -> str:
    """Hex key for one request's inputs (a dict name -> numpy array)."""
    h = hashlib.sha256()
    h.update(f"{model}\0{version}\0".encode())
    for name in sorted(inputs):
        arr = inputs[name]
        h.update(f"{name}\0{arr.dtype.str if arr.dtype != object else 'bytes'}\0{arr.shape}\0".encode())
        h.update(_tensor_bytes(arr))
    return f"{prefix}{h.hexdigest()}"


def _tensor_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype == object or arr.dtype.kind in "SU":
        parts = []
        for item in arr.ravel():
            b = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr).tobytes()


class Codec:
    """Encodes and checks the values of one model's outputs.

    outputs: [(name, numpy dtype, dims without the batch dim, -1 for any)] from the model config.
    """

    def __init__(
        self, secret: bytes, outputs: Sequence[tuple[str, DTypeLike, Sequence[int]]], max_entry_bytes: int, level: int = 6
    ) -> None:
        if not secret:
            raise ValueError("a cache codec needs a secret")
        self.secret = secret
        self.outputs = [(n, np.dtype(d), tuple(int(x) for x in dims)) for n, d, dims in outputs]
        self.max_entry_bytes = int(max_entry_bytes)
        self.level = int(level)

    def _tag(self, key: str, payload: bytes) -> bytes:
        return hmac.new(self.secret, key.encode() + b"\0" + payload, hashlib.sha256).digest()

    def encode(self, key: str, outputs: Mapping[str, Any]) -> bytes | None:
        """One value for `key`; None if it would inflate beyond max_entry_bytes (then it is not stored)."""
        header: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for name, _dtype, _dims in sorted(self.outputs):
            arr = np.asarray(outputs[name])
            data = _tensor_bytes(arr)
            dtype = "bytes" if arr.dtype == object or arr.dtype.kind in "SU" else arr.dtype.str
            header.append({"name": name, "dtype": dtype, "shape": list(arr.shape), "nbytes": len(data)})
            blobs.append(data)
        head = json.dumps(header, separators=(",", ":")).encode()
        raw = struct.pack("<I", len(head)) + head + b"".join(blobs)
        if len(raw) > self.max_entry_bytes or len(head) > MAX_HEADER_BYTES:
            return None
        payload = zlib.compress(raw, self.level)
        return MAGIC + self._tag(key, payload) + payload

    def _inflated_limit(self, batch: int) -> int:
        """The most bytes a genuine value for `batch` rows can inflate to."""
        total = 4 + MAX_HEADER_BYTES
        for _name, dtype, dims in self.outputs:
            if dtype == object or any(d < 0 for d in dims):
                return self.max_entry_bytes
            total += batch * int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        return min(total, self.max_entry_bytes)

    def decode(self, key: str, value: object, batch: int) -> Batch:
        """The outputs stored for `key`, answering `batch` rows; InvalidValue for anything else."""
        if not isinstance(value, (bytes, bytearray)) or len(value) < len(MAGIC) + TAG_BYTES or not value.startswith(MAGIC):
            raise InvalidValue("format", "not a tritonforge cache value")
        tag, payload = value[len(MAGIC) : len(MAGIC) + TAG_BYTES], value[len(MAGIC) + TAG_BYTES :]
        if not hmac.compare_digest(tag, self._tag(key, bytes(payload))):
            raise InvalidValue("authentication", "tag does not match this key under the replicas' secret")
        limit = self._inflated_limit(batch)
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, limit + 1)
        except zlib.error as e:
            raise InvalidValue("format", f"not zlib: {e}") from None
        if len(raw) > limit or inflater.unconsumed_tail or not inflater.eof:
            raise InvalidValue("size", f"inflates beyond {limit} bytes for a batch of {batch}")
        return self._parse(raw, batch)

    def _parse(self, raw: bytes, batch: int) -> Batch:
        if len(raw) < 4:
            raise InvalidValue("format", "truncated")
        (head_len,) = struct.unpack_from("<I", raw, 0)
        if head_len > MAX_HEADER_BYTES or 4 + head_len > len(raw):
            raise InvalidValue("format", "bad header length")
        try:
            header = json.loads(raw[4 : 4 + head_len])
        except ValueError as e:
            raise InvalidValue("format", f"header is not JSON: {e}") from None
        expected = {name: (dtype, dims) for name, dtype, dims in self.outputs}
        if not isinstance(header, list) or sorted(e.get("name", "") for e in header if isinstance(e, dict)) != sorted(expected):
            raise InvalidValue("shape", "outputs differ from the model's")
        offset = 4 + head_len
        out: Batch = {}
        for entry in header:
            name = entry["name"]
            dtype, dims = expected[name]
            shape = entry.get("shape")
            if (
                not isinstance(shape, list)
                or len(shape) != len(dims) + 1
                or shape[0] != batch
                or not all(isinstance(s, int) and s >= 0 and (d < 0 or s == d) for s, d in zip(shape[1:], dims, strict=True))
            ):
                raise InvalidValue("shape", f"output '{name}' has shape {shape}; a batch of {batch} takes {[batch, *dims]}")
            nbytes = entry.get("nbytes")
            if not isinstance(nbytes, int) or nbytes < 0 or offset + nbytes > len(raw):
                raise InvalidValue("format", f"output '{name}': bad length")
            data = raw[offset : offset + nbytes]
            offset += nbytes
            out[name] = self._array(name, entry.get("dtype"), dtype, shape, data)
        if offset != len(raw):
            raise InvalidValue("format", "trailing bytes")
        return out

    @staticmethod
    def _array(name: str, stored: object, dtype: np.dtype, shape: list[int], data: bytes) -> np.ndarray:
        if dtype == object:
            if stored != "bytes":
                raise InvalidValue("shape", f"output '{name}' is stored as {stored}, the model gives BYTES")
            items: list[bytes] = []
            pos = 0
            while pos < len(data):
                if pos + 4 > len(data):
                    raise InvalidValue("format", f"output '{name}': truncated string")
                (n,) = struct.unpack_from("<I", data, pos)
                items.append(data[pos + 4 : pos + 4 + n])
                pos += 4 + n
            if len(items) != int(np.prod(shape)):
                raise InvalidValue("shape", f"output '{name}': {len(items)} strings for shape {shape}")
            return np.array(items, dtype=object).reshape(shape)
        if stored != dtype.str or dtype.kind not in _NUMERIC_KINDS:
            raise InvalidValue("shape", f"output '{name}' is stored as {stored}, the model gives {dtype.str}")
        if len(data) != int(np.prod(shape)) * dtype.itemsize:
            raise InvalidValue("shape", f"output '{name}': {len(data)} bytes for shape {shape}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
