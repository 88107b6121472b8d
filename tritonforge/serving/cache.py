"""tritonforge response cache (Triton Python backend), in front of the router.

Each request's key hashes model name, model version and every input's name, dtype, shape and bytes. Hits are
answered from the store (Redis shared by every replica, or an in-process LRU bounded in bytes); misses of one
batch go to the router in one BLS call and are answered at once, then compressed (zlib) and stored with a TTL
by a writer thread, off the request's path; until written they are served from a small in-process map, so a
repeat is a hit straight away. Values are raw tensor bytes with a JSON header, never pickles. A store that errs
or is slow is bypassed: requests are then served by the model, never failed by the cache.
Counters on /metrics (sent by a background thread, at most `metrics_interval_ms` late): hits, misses,
errors, bytes stored, hit latency.
"""

import json
import queue
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils
from tf_batching import concat, config_parameters, error_response, group_by_shape, output_dtypes, request_inputs, split, tensors_response
from tf_codec import cache_key, decode, encode
from tf_metrics import DeferredMetrics
from tf_store import StoreUnavailable, make_store

HIT_BUCKETS = [50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.params = config_parameters(config)
        self.name = args["model_name"]
        self.target = self.params["target"]
        self.public = self.params.get("public_model", self.name)
        self.version = self.params.get("model_version", "1")
        self.prefix = self.params.get("key_prefix", "tritonforge:")
        self.level = int(self.params.get("compression_level", "6"))
        self.max_value = int(self.params.get("max_value_bytes", str(4 * 2**20)))
        self.input_names = [i["name"] for i in config["input"]]
        self.outputs = output_dtypes(config)
        self.output_names = [n for n, _ in self.outputs]
        self.store = make_store(self.params)
        labels = {"cache": self.name, "store": self.store.kind}
        counter = pb_utils.MetricFamily.COUNTER
        self._families = [
            pb_utils.MetricFamily("tritonforge_cache_hits_total", "Requests answered from the cache", counter),
            pb_utils.MetricFamily("tritonforge_cache_misses_total", "Requests computed by the model", counter),
            pb_utils.MetricFamily("tritonforge_cache_errors_total", "Store errors (request served without cache)", counter),
            pb_utils.MetricFamily("tritonforge_cache_stored_bytes_total", "Compressed bytes written", counter),
            pb_utils.MetricFamily("tritonforge_cache_hit_latency_us", "Lookup+decode time of hits (us)",
                                  pb_utils.MetricFamily.HISTOGRAM),
        ]
        self.m_hits, self.m_misses, self.m_errors, self.m_bytes = (f.Metric(labels) for f in self._families[:4])
        self.m_hit_latency = self._families[4].Metric(labels, buckets=HIT_BUCKETS)
        self.metrics = DeferredMetrics(float(self.params.get("metrics_interval_ms", "100")) / 1000, self.name)
        self._pending = {}  # key -> outputs computed but not yet in the store
        self._lock = threading.Lock()
        self._queue = queue.Queue()
        self._write_errors = []
        self._writer = threading.Thread(target=self._write_loop, name="cache-writer", daemon=True)
        self._writer.start()
        pb_utils.Logger.log_info(f"{self.name}: {self.store.kind} store, ttl {self.params.get('ttl_s', '300')}s")

    def _write_loop(self):
        """Compress and store computed outputs; logging stays on the execute thread."""
        while True:
            items = self._queue.get()
            if items is None:
                return
            try:
                values = [(k, encode(outputs, self.level)) for k, outputs in items]
                values = [(k, v) for k, v in values if len(v) <= self.max_value]
                if values:
                    self.store.set_many(values)
                self.metrics.increment(self.m_bytes, sum(len(v) for _, v in values))
            except Exception as e:  # StoreUnavailable, or anything else: never let the writer die
                self.metrics.increment(self.m_errors)
                with self._lock:
                    self._write_errors.append(f"{type(e).__name__}: {e}")
            finally:
                with self._lock:
                    for k, _ in items:
                        self._pending.pop(k, None)

    def _log_write_errors(self):
        with self._lock:
            errors, self._write_errors = self._write_errors, []
        if errors:
            pb_utils.Logger.log_warn(f"{self.name}: {len(errors)} batch(es) not cached: {errors[-1]}")

    def finalize(self):
        self._queue.put(None)
        self._writer.join(timeout=5)
        self.metrics.close()

    def _lookup(self, keys):
        """Stored values (bytes) or not-yet-written outputs (dicts) per key; None for a miss."""
        with self._lock:
            pending = [self._pending.get(k) for k in keys]
        todo = [i for i, p in enumerate(pending) if p is None]
        if not todo:
            return pending
        try:
            stored = self.store.get_many([keys[i] for i in todo])
        except StoreUnavailable as e:
            self.metrics.increment(self.m_errors)
            pb_utils.Logger.log_warn(f"{self.name}: cache bypassed: {e}")
            stored = [None] * len(todo)
        for i, value in zip(todo, stored):
            pending[i] = value
        return pending

    def _compute(self, batch):
        inputs = [pb_utils.Tensor(n, batch[n]) for n in self.input_names]
        response = pb_utils.InferenceRequest(model_name=self.target, inputs=inputs,
                                             requested_output_names=self.output_names).exec()
        if response.has_error():
            # the target is internal: its own "in ensemble '...'" prefix would only confuse the client
            raise RuntimeError(response.error().message().removeprefix(f"in ensemble '{self.target}', "))
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.output_names}

    def execute(self, requests):
        start = time.perf_counter()
        self._log_write_errors()
        responses = [None] * len(requests)
        arrays = [request_inputs(r, self.input_names) for r in requests]
        keys = [cache_key(self.public, self.version, a, self.prefix) for a in arrays]
        values = self._lookup(keys)
        misses = []
        for i, value in enumerate(values):
            if value is None:
                misses.append(i)
                continue
            try:
                responses[i] = tensors_response(value if isinstance(value, dict) else decode(value), self.outputs)
            except Exception as e:  # a malformed entry is a miss, never an error
                self.metrics.increment(self.m_errors)
                pb_utils.Logger.log_warn(f"{self.name}: unreadable cache entry ignored: {e}")
                misses.append(i)
                continue
            self.metrics.increment(self.m_hits)
            self.metrics.observe(self.m_hit_latency, (time.perf_counter() - start) * 1e6)
        if not misses:
            return responses
        self.metrics.increment(self.m_misses, len(misses))
        to_store = []
        for group in group_by_shape([arrays[i] for i in misses]):
            indices = [misses[g] for g in group]
            batch, sizes = concat(arrays, indices)
            try:
                parts = split(self._compute(batch), sizes)
            except Exception as e:
                if len(indices) == 1:
                    responses[indices[0]] = error_response(str(e))
                    continue
                parts = []
                for i in indices:
                    try:
                        parts.append(self._compute(arrays[i]))
                    except Exception as e2:
                        parts.append(e2)
            for i, part in zip(indices, parts):
                if isinstance(part, Exception):
                    responses[i] = error_response(str(part))
                    continue
                responses[i] = tensors_response(part, self.outputs)
                to_store.append((keys[i], {n: np.array(v, copy=True) for n, v in part.items()}))
        if to_store:
            with self._lock:
                self._pending.update(to_store)
            self._queue.put(to_store)
        return responses
