"""Cache keys and values for tritonforge's response cache (copied beside the cache model; no Triton imports).

Key: sha256 over model name, model version and, for each input in name order, its name, dtype, shape and
bytes (Triton's own response cache ignores shape and dtype; this one does not).
Value: b"TFC1" + zlib(JSON header + raw tensor bytes). The header lists each output's name, dtype, shape and
byte length. Strings are stored length-prefixed. Nothing is ever pickled, and a malformed value is refused.
"""

import hashlib
import json
import struct
import zlib

import numpy as np

MAGIC = b"TFC1"
_NUMERIC_KINDS = "biuf"


def cache_key(model, version, inputs, prefix=""):
    """Hex key for one request's inputs (a dict name -> numpy array)."""
    h = hashlib.sha256()
    h.update(f"{model}\0{version}\0".encode())
    for name in sorted(inputs):
        arr = inputs[name]
        h.update(f"{name}\0{arr.dtype.str if arr.dtype != object else 'bytes'}\0{arr.shape}\0".encode())
        h.update(_tensor_bytes(arr))
    return f"{prefix}{h.hexdigest()}"


def _tensor_bytes(arr):
    if arr.dtype == object or arr.dtype.kind in "SU":
        parts = []
        for item in arr.ravel():
            b = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr).tobytes()


def encode(outputs, level=6):
    """Compress a dict name -> numpy array into one cache value."""
    header, blobs = [], []
    for name in sorted(outputs):
        arr = np.asarray(outputs[name])
        data = _tensor_bytes(arr)
        dtype = "bytes" if arr.dtype == object or arr.dtype.kind in "SU" else arr.dtype.str
        header.append({"name": name, "dtype": dtype, "shape": list(arr.shape), "nbytes": len(data)})
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + zlib.compress(struct.pack("<I", len(head)) + head + b"".join(blobs), level)


def decode(value):
    """Inverse of encode. Raises ValueError on anything that is not a well-formed value."""
    if not value.startswith(MAGIC):
        raise ValueError("not a tritonforge cache value")
    raw = zlib.decompress(value[len(MAGIC):])
    (head_len,) = struct.unpack_from("<I", raw, 0)
    header = json.loads(raw[4:4 + head_len])
    offset, out = 4 + head_len, {}
    for entry in header:
        data = raw[offset:offset + entry["nbytes"]]
        if len(data) != entry["nbytes"]:
            raise ValueError("truncated cache value")
        offset += entry["nbytes"]
        shape = tuple(int(d) for d in entry["shape"])
        if entry["dtype"] == "bytes":
            items, pos = [], 0
            while pos < len(data):
                (n,) = struct.unpack_from("<I", data, pos)
                items.append(data[pos + 4:pos + 4 + n])
                pos += 4 + n
            arr = np.array(items, dtype=object).reshape(shape)
        else:
            dtype = np.dtype(entry["dtype"])
            if dtype.kind not in _NUMERIC_KINDS:
                raise ValueError(f"refusing dtype {dtype} in a cache value")
            arr = np.frombuffer(data, dtype=dtype).reshape(shape)
        out[entry["name"]] = arr
    if offset != len(raw):
        raise ValueError("trailing bytes in cache value")
    return out
