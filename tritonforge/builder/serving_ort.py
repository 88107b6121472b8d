"""The serving environment's ONNX Runtime, driven from the build (see tritonforge/serving/ort_worker.py).

The served model imports the serving environment's ONNX Runtime (the version the container pins), which is not
the one the build runs in: a variant gated in one and served by the other can pass its gate and still serve
answers below it. So the build opens every ONNX variant here, gates it on these outputs and times it with these
sessions (each window timed inside the worker, so the pipe costs nothing in the figures).
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tritonforge import serving
from tritonforge.errors import ServerError
from tritonforge.server.environment import ServingEnvironment
from tritonforge.serving.batching import Batch


class ServingOrt:
    """One worker process in the serving environment, started on first use and ended by `close()`."""

    def __init__(self, environment: ServingEnvironment | None = None) -> None:
        self._environment = environment
        self._process: subprocess.Popen | None = None
        self._next_id = 0
        self.versions: dict[str, str] = {}

    def versions_now(self) -> dict[str, str]:
        """{package: version} of the serving environment's onnxruntime and numpy (starts the worker)."""
        self._ensure()
        return dict(self.versions)

    @property
    def label(self) -> str:
        """What the figures came from, e.g. 'onnxruntime 1.19.2 (serving environment)'."""
        self._ensure()
        return f"onnxruntime {self.versions['onnxruntime']} (serving environment)"

    def _ensure(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        env = (self._environment or ServingEnvironment.default()).ensure()
        package_parent = Path(serving.__file__).resolve().parent.parent
        code = f"import sys; sys.path.insert(0, {str(package_parent)!r}); from serving.ort_worker import main; main()"
        self._process = subprocess.Popen(
            [str(env.python), "-I", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        self.versions = self.call({"op": "version"})[0]
        return self._process

    def call(self, header: dict, arrays: Batch | None = None) -> tuple[dict, Batch | None]:
        """One request to the worker; its error is raised as RuntimeError with the worker's message."""
        from tritonforge.serving.ort_worker import read_frame, write_frame

        process = self._ensure() if header["op"] != "version" else self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        try:
            write_frame(process.stdin, header, arrays)
            frame = read_frame(process.stdout)
        except (BrokenPipeError, OSError) as e:
            frame = None
            error = str(e)
        else:
            error = "it exited"
        if frame is None:
            code = process.poll()
            self._process = None
            raise ServerError(f"the serving environment's ONNX Runtime worker stopped ({error}, exit code {code})")
        reply, out = frame
        if not reply.pop("ok"):
            raise RuntimeError(reply["error"])
        return reply, out

    def open(self, path: Path, output_names: list[str], threads: int) -> RemoteSession:
        self._next_id += 1
        sid = str(self._next_id)
        reply, _ = self.call({"op": "open", "id": sid, "path": str(path), "outputs": output_names, "threads": int(threads)})
        return RemoteSession(self, sid, float(reply["memory_mb"]))

    def close(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            assert self._process.stdin is not None
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._process = None

    def __enter__(self) -> ServingOrt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RemoteSession:
    """One ONNX file opened in the worker."""

    ort: ServingOrt
    id: str
    memory_mb: float

    def run(self, batch: Batch) -> Batch:
        _, out = self.ort.call({"op": "run", "id": self.id}, batch)
        assert out is not None
        return out

    def prepare(self, key: str, batch: Batch) -> None:
        """Keep `batch` in the worker under `key`, for `window`."""
        self.ort.call({"op": "input", "key": key}, batch)

    def window(self, key: str, min_runs: int, window_s: float) -> list[float]:
        """Run the batch kept under `key` back to back (at least `min_runs` times and `window_s` seconds), each
        run timed inside the worker, in seconds."""
        reply, _ = self.ort.call({"op": "window", "id": self.id, "key": key, "min_runs": min_runs, "window_s": window_s})
        return [float(s) for s in reply["samples"]]
