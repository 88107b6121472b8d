"""Blocking gRPC client: numpy in, numpy out, checked against model metadata, several endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonforge.client.base import ClientBase
from tritonforge.client.endpoints import AttemptPlan, message_of
from tritonforge.client.errors import EndpointsUnavailable, InputError
from tritonforge.client.model_info import ModelInfo

T = TypeVar("T")


def build_inputs(arrays: Mapping[str, np.ndarray], info: ModelInfo) -> list[grpcclient.InferInput]:
    """tritonclient InferInputs for arrays already checked by ModelInfo.prepare."""
    out = []
    for name, arr in arrays.items():
        inp = grpcclient.InferInput(name, list(arr.shape), info.inputs[name].datatype)
        inp.set_data_from_numpy(arr)
        out.append(inp)
    return out


class Client(ClientBase):
    """A Triton gRPC client.

    >>> Client("localhost:8001").infer("digits", {"image": x})["logits"]

    `timeout` bounds each call (model_info, infer) in seconds, every endpoint and retry included. It defaults
    to 30 s (`tritonforge.client.endpoints.DEFAULT_TIMEOUT`); `timeout=None`, here or per call, means that
    default, never "wait for ever": a server that accepts the connection and never answers costs at most the
    deadline. Pass a larger number explicitly for calls known to take longer (`Client(url, timeout=300)` or
    `infer(..., timeout=300)`).

    `url` may be a list: requests go round-robin, and one that meets a connection error, an unavailable
    server, a server that does not answer within the attempt's share of the deadline (`attempt_timeout`,
    default: `timeout` shared by one try of every endpoint and one retry), or an endpoint that answers NOT_FOUND
    for the model (a replica draining on SIGTERM, or one that never loaded the model) is retried on the next
    endpoint with exponential backoff, within the same deadline. Only when every endpoint says it does not serve
    the model is the call ModelNotFound; request errors (INVALID_ARGUMENT: a bad tensor) are never retried. An
    endpoint that failed sits out `cooldown` seconds, doubling with each failure in a row up to `max_cooldown`,
    then one request probes it: an answer brings it back, any error sends it back to its back-off.
    """

    transport = grpcclient

    # ---- plumbing -----------------------------------------------------------------------------
    def _call(self, model: str, fn: Callable[[grpcclient.InferenceServerClient, float | None], T], timeout: float | None) -> T:
        plan = AttemptPlan(self.pool, self.policy, self.timeout if timeout is None else timeout, model)
        try:
            for step in plan:
                if not step.url:  # a pause between rounds (zero with backoff=0)
                    time.sleep(step.sleep)
                    continue
                try:
                    result = fn(self._clients[step.url], step.left)
                except InferenceServerException as e:
                    plan.failed(step.url, e)
                    continue
                plan.succeeded(step.url)
                return result
            raise plan.exhausted()
        finally:
            plan.close()  # an endpoint this call probed is never left marked as probed

    # ---- API ----------------------------------------------------------------------------------
    def model_info(self, model: str, version: str = "", timeout: float | None = None) -> ModelInfo:
        """Inputs, outputs and max batch size of a model (cached)."""
        key = (model, version)
        if key not in self._info:

            def fetch(c: grpcclient.InferenceServerClient, left: float | None) -> ModelInfo:
                meta = c.get_model_metadata(model, version, headers=self.headers, as_json=True, client_timeout=left)
                config = c.get_model_config(model, version, headers=self.headers, as_json=True, client_timeout=left)
                return ModelInfo.from_json(meta, config.get("config", {}))

            self._info[key] = self._call(model, fetch, timeout)
        return self._info[key]

    def infer(
        self,
        model: str,
        inputs: Mapping[str, object],
        outputs: Sequence[str] | None = None,
        *,
        version: str = "",
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run one request. Inputs are checked against the model's metadata before sending (InputError)."""
        info = self.model_info(model, version, timeout)
        arrays = info.prepare(inputs, reject_nonfinite=self.reject_nonfinite)
        names = list(outputs) if outputs is not None else list(info.outputs)
        unknown = [n for n in names if n not in info.outputs]
        if unknown:
            raise InputError(f"model '{model}' has no output {unknown[0]!r}; its outputs are: {', '.join(info.outputs)}")

        def run(c: grpcclient.InferenceServerClient, left: float | None) -> dict[str, np.ndarray]:
            result = c.infer(
                model,
                build_inputs(arrays, info),
                model_version=version,
                outputs=[grpcclient.InferRequestedOutput(n) for n in names],
                headers=self.headers,
                client_timeout=left,
            )
            return {n: info.as_model_gives(n, result.as_numpy(n)) for n in names}

        return self._call(model, run, timeout)

    def wait_until_ready(self, model: str | None = None, timeout: float = 60.0, every: float = 0.2) -> str:
        """Block until some endpoint is ready (and serves `model` READY, if given). Returns that endpoint."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for url, c in self._clients.items():
                try:
                    ready = c.is_server_ready(client_timeout=2) and (model is None or c.is_model_ready(model, client_timeout=2))
                    if ready:
                        return url
                    last = f"{url}: model '{model}' not ready" if model else f"{url}: server not ready"
                except InferenceServerException as e:
                    last = f"{url}: {message_of(e)}"
            time.sleep(every)
        raise EndpointsUnavailable(f"not ready after {timeout:.0f}s ({last})")

    def close(self) -> None:
        for c in self._clients.values():
            c.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
