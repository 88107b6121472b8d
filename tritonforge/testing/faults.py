"""Faults to inject into a running local server, and the malformed requests every public model must refuse.

Used by tritonforge's own tests and benchmarks; useful for yours: `malformed_requests(url, model)` derives
each kind of bad request from the model's metadata, and a server that answers every one of them with
INVALID_ARGUMENT naming the problem, then still serves, passes.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonforge.server.process import LocalTritonServer


def kill(server: LocalTritonServer) -> None:
    """SIGKILL the server and its Python-backend stubs (its whole process group), as a crashed node would."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP a process for the duration: it keeps its sockets (TCP connects succeed) but answers nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def stub_pids(server: LocalTritonServer, model: str) -> list[int]:
    """PIDs of the Python-backend stubs serving `model` on `server` (their command line names the model file)."""
    marker = str(Path(server.repo) / model) + os.sep
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if (
                cmdline
                and cmdline[0].endswith(b"triton_python_backend_stub")
                and any(part.decode(errors="replace").startswith(marker) for part in cmdline[1:2])
            ):
                pids.append(int(entry.name))
    return pids


@dataclass
class BadRequest:
    """One malformed request: what it is, the model it goes to, its tensors, and a fragment of the refusal."""

    name: str
    model: str
    inputs: list
    expect: str


def _tensor(name: str, arr: np.ndarray, datatype: str):
    import tritonclient.grpc as grpcclient

    t = grpcclient.InferInput(name, list(arr.shape), datatype)
    t.set_data_from_numpy(arr)
    return t


def malformed_requests(url: str, model: str) -> list[BadRequest]:
    """Every kind of bad request for `model`, derived from its metadata on the server at `url` (gRPC)."""
    import tritonclient.grpc as grpcclient

    from tritonforge.client.model_info import WIRE_TO_NUMPY

    client = grpcclient.InferenceServerClient(url)
    try:
        meta = client.get_model_metadata(model, as_json=True)
        config = client.get_model_config(model, as_json=True)["config"]
    finally:
        client.close()
    max_batch = int(config.get("max_batch_size", 0))
    inputs = [{**i, "shape": [int(d) for d in i["shape"]]} for i in meta["inputs"]]

    def good(datatype: str, shape: list[int], rows: int = 1) -> np.ndarray:
        dims = [rows] + [2 if d == -1 else d for d in shape[1:]]
        if datatype == "BYTES":
            return np.array(["a text"] * int(np.prod(dims)), dtype=object).reshape(dims)
        return np.zeros(dims, dtype=WIRE_TO_NUMPY[datatype])

    def request(**replace) -> list:
        return [replace.get(i["name"]) or _tensor(i["name"], good(i["datatype"], i["shape"]), i["datatype"]) for i in inputs]

    first = inputs[0]
    name, dtype, shape = first["name"], first["datatype"], first["shape"]
    cases = [
        BadRequest(
            "wrong tensor name",
            model,
            [_tensor(name + "_x", good(dtype, shape), dtype)] + request()[1:],
            f"unexpected inference input '{name}_x'",
        ),
        BadRequest(
            "batch over max_batch_size",
            model,
            [_tensor(i["name"], good(i["datatype"], i["shape"], max_batch + 1), i["datatype"]) for i in inputs],
            f"batch-size must be <= {max_batch}",
        ),
        BadRequest("unknown model", f"{model}_no_such_model", request(), "unknown model"),
    ]
    fixed = [k for k, d in enumerate(shape[1:]) if d != -1]
    if fixed:
        dims = [1] + [2 if d == -1 else d for d in shape[1:]]
        dims[fixed[0] + 1] -= 1
        cases.append(
            BadRequest(
                "wrong shape",
                model,
                request(
                    **{
                        name: _tensor(
                            name,
                            np.zeros(dims, WIRE_TO_NUMPY[dtype])
                            if dtype != "BYTES"
                            else np.array([["x"] * dims[1]], dtype=object),
                            dtype,
                        )
                    }
                ),
                f"unexpected shape for input '{name}'",
            )
        )
    if dtype == "BYTES":
        cases += [
            BadRequest(
                "a text of 1 MB",
                model,
                request(**{name: _tensor(name, np.array([["x" * 2**20]], dtype=object), dtype)}),
                "is 1048576 bytes; the limit is",
            ),
            BadRequest(
                "invalid UTF-8",
                model,
                request(**{name: _tensor(name, np.array([[b"\xff\xfe"]], dtype=object), dtype)}),
                "not valid UTF-8",
            ),
            BadRequest(
                "numbers for a text input",
                model,
                request(**{name: _tensor(name, np.zeros((1, 1), np.float32), "FP32")}),
                f"data-type is 'FP32', but model '{model}' expects 'BYTES'",
            ),
        ]
    else:
        other = "FP64" if dtype != "FP64" else "FP32"
        cases.append(
            BadRequest(
                "wrong dtype",
                model,
                request(**{name: _tensor(name, good(other, shape), other)}),
                f"data-type is '{other}', but model '{model}' expects '{dtype}'",
            )
        )
        cases.append(
            BadRequest(
                "empty batch",
                model,
                [_tensor(i["name"], good(i["datatype"], i["shape"], 0), i["datatype"]) for i in inputs],
                "byte size",
            )
        )
    if dtype in ("FP32", "FP16", "FP64"):
        for label, value in (("NaN", np.nan), ("Inf", np.inf)):
            arr = good(dtype, shape)
            arr.reshape(-1)[0] = value
            cases.append(
                BadRequest(label, model, request(**{name: _tensor(name, arr, dtype)}), f"input '{name}' holds 1 NaN or Inf")
            )
    return cases
