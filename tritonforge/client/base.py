"""What the blocking and the asyncio client share: endpoints, the retry policy, request options and the cache of
model metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tritonforge.client.endpoints import pool_and_policy, resolve_timeout
from tritonforge.client.model_info import ModelInfo


class ClientBase:
    """Settings of a client (see `Client` for what each means); subclasses name their tritonclient module."""

    transport: Any  # tritonclient.grpc or tritonclient.grpc.aio

    def __init__(
        self,
        url: str | Sequence[str] = "localhost:8001",
        *,
        timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        reject_nonfinite: bool = True,
        ssl: bool = False,
        headers: Mapping[str, str] | None = None,
        attempt_timeout: float | None = None,
        cooldown: float = 1.0,
        max_cooldown: float = 30.0,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        self.timeout = resolve_timeout(timeout)  # None: DEFAULT_TIMEOUT (30 s), never unbounded
        self.pool, self.policy = pool_and_policy(
            urls, self.timeout, retries, backoff, max_backoff, attempt_timeout, cooldown, max_cooldown
        )
        self.reject_nonfinite = reject_nonfinite
        self.headers = dict(headers or {})
        self._clients = {u: self.transport.InferenceServerClient(u, ssl=ssl) for u in self.pool.urls}
        self._info: dict[tuple[str, str], ModelInfo] = {}
