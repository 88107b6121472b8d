"""ONNX Runtime as the server runs it, for the build: a worker process in the serving environment.

The build gates and times every ONNX variant here, so each figure comes from the ONNX Runtime the served model
imports (the serving environment's, pinned in requirements.txt) with the session options the in-process rungs
use (`runner.session`), not from the build's own ONNX Runtime. The build talks to it over stdin/stdout in
frames: a JSON header, then, where the operation carries tensors, one .npz (never pickled: object arrays are
refused).

Operations: open {id, path, outputs, threads} -> {memory_mb}; run {id} + inputs -> outputs; input {key} +
inputs (kept for timing); window {id, key, min_runs, window_s} -> {samples}: the batch run back to back until
both bounds are met, each run timed here; close {id}; version -> {onnxruntime}.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import time
from typing import IO, Any

import numpy as np

from .batching import Batch
from .runner import session

Header = dict[str, Any]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def read_frame(stream: IO[bytes]) -> tuple[Header, Batch | None] | None:
    """(header dict, arrays dict or None) from `stream`; None at end of stream."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    n_json, n_npz = struct.unpack("<II", head)
    header = json.loads(stream.read(n_json))
    arrays = None
    if n_npz:
        with np.load(io.BytesIO(stream.read(n_npz)), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    return header, arrays


def write_frame(stream: IO[bytes], header: Header, arrays: Batch | None = None) -> None:
    payload = b""
    if arrays is not None:
        buf = io.BytesIO()
        named: dict[str, Any] = dict(arrays)  # numpy types savez(**kwds) as its own keyword arguments
        np.savez(buf, **named)
        payload = buf.getvalue()
    body = json.dumps(header).encode()
    stream.write(struct.pack("<II", len(body), len(payload)) + body + payload)
    stream.flush()


class Worker:
    """The sessions and timing inputs of one build."""

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[Any, list[str], list[str]]] = {}  # id -> (session, outputs, inputs)
        self.inputs: dict[str, Batch] = {}

    def handle(self, header: Header, arrays: Batch | None) -> tuple[Header, Batch | None]:
        op = header["op"]
        if op == "version":
            import onnxruntime

            return {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__}, None
        if op == "open":
            before = _rss_mb()
            sess = session(header["path"], header["threads"])
            self.sessions[header["id"]] = (sess, list(header["outputs"]), [i.name for i in sess.get_inputs()])
            return {"memory_mb": max(0.0, _rss_mb() - before)}, None
        if op == "close":
            self.sessions.pop(header["id"], None)
            return {}, None
        if op == "input":
            if arrays is None:
                raise ValueError("operation 'input' carries no tensors")
            self.inputs[header["key"]] = arrays
            return {}, None
        sess, outputs, inputs = self.sessions[header["id"]]
        if op == "run":
            if arrays is None:
                raise ValueError("operation 'run' carries no tensors")
            feed = {n: np.ascontiguousarray(arrays[n]) for n in inputs}
            return {}, dict(zip(outputs, sess.run(outputs, feed), strict=True))
        if op == "window":
            feed = {n: self.inputs[header["key"]][n] for n in inputs}
            samples: list[float] = []
            start = time.perf_counter()
            while len(samples) < header["min_runs"] or time.perf_counter() - start < header["window_s"]:
                t0 = time.perf_counter()
                sess.run(outputs, feed)
                samples.append(time.perf_counter() - t0)
            return {"samples": samples}, None
        raise ValueError(f"unknown operation {op!r}")


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    worker = Worker()
    while True:
        frame = read_frame(stdin)
        if frame is None:
            return
        try:
            header, arrays = worker.handle(*frame)
            write_frame(stdout, {"ok": True, **header}, arrays)
        except Exception as e:
            write_frame(stdout, {"ok": False, "error": f"{type(e).__name__}: {str(e).strip()[:800]}"})


if __name__ == "__main__":
    main()
