"""asyncio gRPC client: the same checks and endpoint policy as `Client`, with coroutines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from tritonforge.client.base import ClientBase
from tritonforge.client.endpoints import AttemptPlan, message_of
from tritonforge.client.errors import EndpointsUnavailable, InputError
from tritonforge.client.model_info import ModelInfo
from tritonforge.client.sync import build_inputs

T = TypeVar("T")


class AsyncClient(ClientBase):
    """asyncio variant of `Client`: `await AsyncClient(url).infer(model, {...})`. The same deadline (30 s by default,
    `timeout=None` included), endpoint order, retries and back-off; a cancelled call hands back any endpoint it
    was probing."""

    transport = aioclient

    async def _call(
        self, model: str, fn: Callable[[aioclient.InferenceServerClient, float | None], Awaitable[T]], timeout: float | None
    ) -> T:
        plan = AttemptPlan(self.pool, self.policy, self.timeout if timeout is None else timeout, model)
        try:
            for step in plan:
                if not step.url:  # a pause between rounds (zero with backoff=0)
                    await asyncio.sleep(step.sleep)
                    continue
                try:
                    result = await fn(self._clients[step.url], step.left)
                except InferenceServerException as e:
                    plan.failed(step.url, e)
                    continue
                plan.succeeded(step.url)
                return result
            raise plan.exhausted()
        finally:
            plan.close()  # an endpoint this call probed is never left marked as probed

    async def model_info(self, model: str, version: str = "", timeout: float | None = None) -> ModelInfo:
        key = (model, version)
        if key not in self._info:

            async def fetch(c: aioclient.InferenceServerClient, left: float | None) -> ModelInfo:
                meta = await c.get_model_metadata(model, version, headers=self.headers, as_json=True, client_timeout=left)
                config = await c.get_model_config(model, version, headers=self.headers, as_json=True, client_timeout=left)
                return ModelInfo.from_json(meta, config.get("config", {}))

            self._info[key] = await self._call(model, fetch, timeout)
        return self._info[key]

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, object],
        outputs: Sequence[str] | None = None,
        *,
        version: str = "",
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        info = await self.model_info(model, version, timeout)
        arrays = info.prepare(inputs, reject_nonfinite=self.reject_nonfinite)
        names = list(outputs) if outputs is not None else list(info.outputs)
        unknown = [n for n in names if n not in info.outputs]
        if unknown:
            raise InputError(f"model '{model}' has no output {unknown[0]!r}; its outputs are: {', '.join(info.outputs)}")

        async def run(c: aioclient.InferenceServerClient, left: float | None) -> dict[str, np.ndarray]:
            result = await c.infer(
                model,
                build_inputs(arrays, info),
                model_version=version,
                outputs=[grpcclient.InferRequestedOutput(n) for n in names],
                headers=self.headers,
                client_timeout=left,
            )
            return {n: info.as_model_gives(n, result.as_numpy(n)) for n in names}

        return await self._call(model, run, timeout)

    async def wait_until_ready(self, model: str | None = None, timeout: float = 60.0, every: float = 0.2) -> str:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for url, c in self._clients.items():
                try:
                    ready = await c.is_server_ready(client_timeout=2)
                    if ready and model is not None:
                        ready = await c.is_model_ready(model, client_timeout=2)
                    if ready:
                        return url
                    last = f"{url}: not ready"
                except InferenceServerException as e:
                    last = f"{url}: {message_of(e)}"
            await asyncio.sleep(every)
        raise EndpointsUnavailable(f"not ready after {timeout:.0f}s ({last})")

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
