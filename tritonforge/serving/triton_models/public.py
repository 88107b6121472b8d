"""tritonforge public model (Triton Python backend): the serving logic of one model in one hop.

For each batch of requests: input checks (size, shapes, NaN/Inf, value ranges), the response cache lookup (keyed on
the request as sent, or on the pre-processed tensors), pre-processing (tokenizer) for the misses, the router
over the rungs (native variant models through BLS at this build's version, then the ONNX variants in-process),
the answers, and off the request path the cache write and, for a sampled share, the shadow's comparison with FP32
(shadow.py: a variant that drifts is demoted in the router). Every request's error is its own: INVALID_ARG for its
bad input, INTERNAL only when no rung could answer it.

Settings come from one JSON parameter, `tritonforge`, that the build dumps from the spec (settings.py reads it,
strictly): no defaults here.
Among them `files`, the sha256 of every file the build placed in the version directory: a file that differs
makes initialize raise, and the model is UNAVAILABLE with the file named (integrity.py).
"""

import sys

sys.dont_write_bytecode = True  # nothing written into the repository (it may be read-only or shared)

import json
import os
import secrets
import time
from typing import Any

import triton_python_backend_utils as pb_utils
from tritonforge_serving import metric_names as m
from tritonforge_serving.batching import Batch, batch_size
from tritonforge_serving.cache import ResponseCache, authentication_message
from tritonforge_serving.checks import InputChecks
from tritonforge_serving.codec import REASONS, Codec
from tritonforge_serving.errors import RequestError
from tritonforge_serving.metrics import MetricsPublisher
from tritonforge_serving.router import NoRungAnswered, Routed, Router, Rung
from tritonforge_serving.runner import InProcessRung
from tritonforge_serving.settings import BlsRungSettings, PublicSettings, ShadowSettings
from tritonforge_serving.shadow import Shadow
from tritonforge_serving.store import MemoryStore, RedisStore, Store, secret_from_environment
from tritonforge_serving.tally import Tally
from tritonforge_serving.tokenize import TextEncoder
from tritonforge_serving.triton_io import (
    BlsRung,
    error_response,
    output_dtypes,
    request_inputs,
    tensors_response,
    verified_settings,
)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.name = args["model_name"]
        # Its own files and its in-process rungs' against the build's sha256, before anything reads them.
        config, s, version_dir = verified_settings(args, PublicSettings)
        self.labels = {"model": self.name}
        self.tally = Tally()
        self.outputs = output_dtypes(config)
        self.output_names = [n for n, _ in self.outputs]
        self.public_inputs = [t.name for t in s.inputs]
        self.checks = InputChecks(s.inputs + s.model_inputs, s.max_request_bytes, s.reject_nonfinite)
        model_input_names = [t.name for t in s.model_inputs]
        self.encoder: TextEncoder | None = None
        if s.preprocess is not None:
            self.encoder = TextEncoder(os.path.join(version_dir, s.preprocess.file), s.preprocess, model_input_names)
        rungs: list[Rung] = []
        in_process: list[InProcessRung] = []
        for r in s.rungs:
            if isinstance(r, BlsRungSettings):
                rungs.append(BlsRung(r.model, r.version, r.inputs, self.output_names, s.router.rung_timeout_ms))
            else:
                local = InProcessRung(
                    r.name, os.path.join(version_dir, r.file), model_input_names, self.output_names, s.intra_op_threads
                )
                rungs.append(local)
                in_process.append(local)
        for local in in_process:
            local.warm(s.model_inputs, s.warmup.batch_sizes, s.warmup.dynamic_dim)
        self.router = Router(
            rungs, s.router.breaker_failures, s.router.breaker_seconds, self.tally, self.labels, on_state=self._rung_state
        )
        self.shadow: Shadow | None = None
        if s.shadow is not None:
            self.shadow = self._shadow(s.shadow, in_process, version_dir, model_input_names, s)
        self.publisher = MetricsPublisher(
            self.tally,
            s.metrics_interval_ms / 1000,
            self.name,
            self.labels,
            gauges=[self.router.gauges] + ([self.shadow.gauges] if self.shadow else []),
            periodic=[self.router.probe_absent] + ([self.shadow.tick] if self.shadow else []),
            period_s=max(1.0, s.router.breaker_seconds),
        )
        self.cache, self.cache_on_texts = self._cache(s)
        self._prepare_metrics(rungs)
        self.publisher.start()
        if self.shadow is not None:
            self.shadow.start()
        shadowed = f"; shadow {s.shadow.fraction:g} of answers against FP32" if s.shadow is not None else ""
        pb_utils.Logger.log_info(
            f"{self.name}: rungs {[r.name for r in rungs]}"
            + (f"; cache {self.cache.store.kind}" if self.cache else "; no cache")
            + shadowed
        )

    def _prepare_metrics(self, rungs: list[Rung]) -> None:
        """Every metric whose labels are known at load, so /metrics lists them (at 0) from the start."""
        for rung in rungs:
            for name in m.ROUTER_PER_RUNG:
                self.publisher.prepare(name, variant=rung.name)
        for name in m.ROUTER_PER_MODEL:
            self.publisher.prepare(name)
        if self.shadow is not None:
            for rung in rungs:
                if rung.name != self.shadow.reference_rung:
                    for name in (m.SHADOW_SAMPLES, m.SHADOW_BROKEN):
                        self.publisher.prepare(name, variant=rung.name)
            for name in m.SHADOW_PER_MODEL:
                self.publisher.prepare(name)
        if self.cache is not None:
            store = {"store": self.cache.store.kind}
            for name in m.CACHE_COUNTERS:
                self.publisher.prepare(name, **store)
            for reason in REASONS:
                self.publisher.prepare(m.CACHE_REJECTED, reason=reason, **store)
            self.publisher.prepare(m.CACHE_HIT_LATENCY_US)

    def _rung_state(self, rung: str, state: str, reason: str) -> None:
        self.publisher.log(
            "info" if state in ("loaded", "restored") else "warn",
            f"{self.name}: rung {rung} {state}" + (f": {reason[:600]}" if reason else ""),
        )

    def _shadow(
        self,
        settings: ShadowSettings,
        in_process: list[InProcessRung],
        version_dir: str,
        input_names: list[str],
        s: PublicSettings,
    ) -> Shadow:
        """The shadow against the FP32 reference: a session of its own on one thread (never the serving rungs'
        sessions and thread pools); the in-process rung that runs the same file is the reference rung, whose answers
        are not compared."""
        path = os.path.join(version_dir, settings.reference_file)
        reference_rung = next((r.name for r in in_process if r.session_path == path), None)
        reference = InProcessRung("shadow_reference", path, input_names, self.output_names, intra_op_threads=1)
        reference.warm(s.model_inputs, [1], s.warmup.dynamic_dim)
        return Shadow(
            reference.call,
            reference_rung,
            settings,
            self.output_names,
            self.tally,
            self.labels,
            demote=self.router.demote,
            restore=self.router.restore,
            log=lambda level, message: self.publisher.log(level, f"{self.name}: {message}"),
        )

    def _store_state(self, operation: str, bypassed: bool, reason: str) -> None:
        self.publisher.log(
            "warn" if bypassed else "info",
            f"{self.name}: cache {operation} " + (f"bypassed: {reason[:300]}" if bypassed else "resumed"),
        )

    def _cache(self, s: PublicSettings) -> tuple[ResponseCache | None, bool]:
        c = s.cache
        if c is None:
            return None, False
        store: Store
        if c.kind == "redis":
            secret = secret_from_environment(c.secret_env)
            if not secret and not c.redis_private:
                raise pb_utils.TritonModelException(
                    f"{self.name}: the Redis cache needs the replicas' shared secret in ${c.secret_env} (or a file "
                    f"named by ${c.secret_env}_FILE): without it anyone who can write to the Redis chooses the "
                    "answers. Set cache.redis_private: true only if nothing else can reach that Redis."
                )
            url = os.environ.get(c.redis_url_env, "") or c.redis_url
            store = RedisStore.from_settings(c, url, secret_from_environment(c.password_env), on_state=self._store_state)
            secret = secret or b"tritonforge: private redis, unauthenticated"
        else:
            store, secret = MemoryStore(c.memory_max_bytes, c.ttl_s), secrets.token_bytes(32)
        dims = {o.name: o.dims for o in s.outputs}
        codec = Codec(secret, [(n, dt, dims[n]) for n, dt in self.outputs], c.max_entry_bytes, c.compression_level)
        labels = {**self.labels, "store": store.kind}
        secret_env = c.secret_env
        cache = ResponseCache(
            store,
            codec,
            s.public,
            s.cache_version,
            c.key_prefix,
            c.max_pending_writes,
            self.tally,
            labels,
            on_authentication=lambda failing: self.publisher.log(
                "warn" if failing else "info", authentication_message(self.name, failing, secret_env)
            ),
        )
        return cache, c.placement == "before_preprocess" or self.encoder is None

    # ---- requests ---------------------------------------------------------------------------------
    def execute(self, requests: list[Any]) -> list[Any]:
        start = time.perf_counter()
        n = len(requests)
        responses: list[Any] = [None] * n
        arrays = [request_inputs(r, self.public_inputs) for r in requests]
        todo: list[int] = []
        probes: list[int] = []
        for i, a in enumerate(arrays):
            try:
                self.checks.check(a)
            except RequestError as e:
                responses[i] = self._refused(e)
                continue
            (probes if self._is_probe(requests[i]) else todo).append(i)
        keys: dict[int, str] = {}
        if self.cache is not None and self.cache_on_texts:
            todo = self._lookup(todo, arrays, arrays, keys, responses, start)
        todo += probes  # readiness probes bypass the cache: they must exercise the compute path
        model_inputs = arrays
        if self.encoder is not None:
            model_inputs = [{} for _ in range(n)]  # filled for the requests that go on
            texts: list[list[str]] = []
            owners: list[int] = []
            for i in todo:
                try:
                    texts.append(self.encoder.texts(arrays[i]))
                    owners.append(i)
                except RequestError as e:
                    responses[i] = self._refused(e)
            for i, encoded in zip(owners, self.encoder.encode(texts), strict=True):
                model_inputs[i] = encoded
            todo = owners
            if self.cache is not None and not self.cache_on_texts:
                probed = [i for i in todo if i in probes]
                todo = self._lookup([i for i in todo if i not in probes], arrays, model_inputs, keys, responses, start) + probed
        if not todo:
            return responses
        self._answer(self.router.route(model_inputs, todo), model_inputs, keys, probes, responses)
        return responses

    def _answer(
        self, routed: Routed, model_inputs: list[Batch], keys: dict[int, str], probes: list[int], responses: list[Any]
    ) -> None:
        """Each routed request's response; the computed answers to the cache's writer and the shadow."""
        computed: list[tuple[str, Batch]] = []
        for i, result in routed.results.items():
            if isinstance(result, RequestError):
                responses[i] = self._refused(result)
            elif isinstance(result, NoRungAnswered):
                responses[i] = error_response(str(result))
            else:
                responses[i] = tensors_response(result, self.outputs)
                if i in keys:
                    computed.append((keys[i], result))
                if self.shadow is not None and i not in probes:
                    self.shadow.offer(routed.rungs[i], model_inputs[i], result)
        if computed and self.cache is not None:
            self.cache.put(computed)

    @staticmethod
    def _is_probe(request: Any) -> bool:
        parameters = request.parameters()
        return "tritonforge_probe" in parameters and json.loads(parameters).get("tritonforge_probe") is True

    def _refused(self, error: RequestError) -> Any:
        self.tally.add(m.ROUTER_REJECTED, **self.labels)
        return error_response(str(error), invalid_argument=True)

    def _lookup(
        self,
        todo: list[int],
        arrays: list[Batch],
        keyed: list[Batch],
        keys: dict[int, str],
        responses: list[Any],
        start: float,
    ) -> list[int]:
        """Answer the hits among `todo` (keyed on `keyed[i]`), remember the misses' keys; returns the misses."""
        assert self.cache is not None
        for i in todo:
            keys[i] = self.cache.key(keyed[i])
        found = self.cache.lookup([keys[i] for i in todo], [batch_size(arrays[i]) for i in todo])
        misses: list[int] = []
        for i, outputs in zip(todo, found, strict=True):
            if outputs is None:
                misses.append(i)
            else:
                responses[i] = tensors_response(outputs, self.outputs)
                self.tally.observe(m.CACHE_HIT_LATENCY_US, (time.perf_counter() - start) * 1e6)
        return misses

    def finalize(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
        if self.cache is not None:
            self.cache.close()
        self.publisher.close()
