"""tritonforge fallback router (Triton Python backend).

Calls the variants through BLS in the build report's order (fastest passing first, the in-process ONNX
Runtime runners last). A variant that is not ready is skipped at once and probed again after `breaker_seconds`;
one that fails `breaker_failures` times in a row is skipped likewise (circuit breaker). If every breaker is
open, every rung is tried anyway: a request fails only when no variant can answer it. Batches from the dynamic
batcher go through whole; a batch that fails everywhere is retried request by request, so an error reaches
only the request that caused it. Counters on /metrics (sent by a background thread, at most `metrics_interval_ms`
late): requests per variant, failures, fallbacks, breaker state.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from tf_batching import concat, config_parameters, error_response, group_by_shape, output_dtypes, request_inputs, split, tensors_response
from tf_breaker import CircuitBreaker
from tf_metrics import DeferredMetrics

NOT_THERE = ("not ready", "unknown model", "no available versions", "is not found", "not loaded")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config_parameters(config)
        self.name = args["model_name"]
        self.rungs = json.loads(params["rungs"])
        failures = int(params.get("breaker_failures", "3"))
        seconds = float(params.get("breaker_seconds", "30"))
        self.breakers = {r["model"]: CircuitBreaker(failures, seconds) for r in self.rungs}
        self.timeout_us = int(float(params.get("rung_timeout_ms", "0")) * 1000)
        self.reject_nonfinite = params.get("reject_nonfinite", "true") == "true"
        self.input_names = [i["name"] for i in config["input"]]
        self.outputs = output_dtypes(config)
        self.output_names = [n for n, _ in self.outputs]
        self._metrics()
        self.metrics = DeferredMetrics(float(params.get("metrics_interval_ms", "100")) / 1000, self.name)

    def finalize(self):
        self.metrics.close()

    def _metrics(self):
        counter, gauge = pb_utils.MetricFamily.COUNTER, pb_utils.MetricFamily.GAUGE
        served = pb_utils.MetricFamily("tritonforge_router_requests_total", "Requests answered, per variant", counter)
        failed = pb_utils.MetricFamily("tritonforge_router_failures_total", "Failed calls, per variant", counter)
        fallback = pb_utils.MetricFamily("tritonforge_router_fallbacks_total",
                                         "Requests answered by a variant other than the first", counter)
        breaker = pb_utils.MetricFamily("tritonforge_router_breaker_open", "1 while a variant is skipped", gauge)
        rejected = pb_utils.MetricFamily("tritonforge_router_rejected_total", "Requests refused (bad input)", counter)
        labels = lambda m: {"router": self.name, "variant": m}  # noqa: E731
        self.m_served = {r["model"]: served.Metric(labels(r["model"])) for r in self.rungs}
        self.m_failed = {r["model"]: failed.Metric(labels(r["model"])) for r in self.rungs}
        self.m_breaker = {r["model"]: breaker.Metric(labels(r["model"])) for r in self.rungs}
        self.m_fallback = fallback.Metric({"router": self.name})
        self.m_rejected = rejected.Metric({"router": self.name})
        self._families = (served, failed, fallback, breaker, rejected)
        self._breaker_shown = {r["model"]: 0 for r in self.rungs}

    def _show_breaker(self, model):
        """Update the breaker gauge only when its state changed (each metric update is an IPC round trip)."""
        state = 1 if self.breakers[model].is_open else 0
        if self._breaker_shown[model] != state:
            self.m_breaker[model].set(state)
            self._breaker_shown[model] = state

    def _invalid(self, arrays):
        if not self.reject_nonfinite:
            return None
        for name, arr in arrays.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                return f"input '{name}' holds {int((~np.isfinite(arr)).sum())} NaN or Inf value(s)"
        return None

    def _call(self, rung, batch):
        inputs = [pb_utils.Tensor(name, np.ascontiguousarray(batch[name], dtype=pb_utils.triton_string_to_numpy(dtype)))
                  for name, dtype in rung["inputs"].items()]
        request = pb_utils.InferenceRequest(model_name=rung["model"], inputs=inputs,
                                            requested_output_names=self.output_names, timeout=self.timeout_us)
        response = request.exec()
        if response.has_error():
            raise RuntimeError(response.error().message())
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.output_names}

    def _route(self, batch, count):
        """Outputs from the first rung that answers, or (None, error message)."""
        allowed = [r for r in self.rungs if self.breakers[r["model"]].allow()] or self.rungs
        errors = []
        for rung in allowed:
            model, breaker = rung["model"], self.breakers[rung["model"]]
            try:
                outputs = self._call(rung, batch)
            except Exception as e:
                message = str(e)
                breaker.failure(unavailable=any(s in message.lower() for s in NOT_THERE))
                self.metrics.increment(self.m_failed[model])
                self._show_breaker(model)
                errors.append(f"{model}: {message}")
                continue
            breaker.success()
            self._show_breaker(model)
            self.metrics.increment(self.m_served[model], count)
            if model != self.rungs[0]["model"]:
                self.metrics.increment(self.m_fallback, count)
            return outputs, None
        return None, "no variant could answer: " + " | ".join(errors)

    def execute(self, requests):
        responses = [None] * len(requests)
        arrays = [request_inputs(r, self.input_names) for r in requests]
        valid = []
        for i, a in enumerate(arrays):
            problem = self._invalid(a)
            if problem:
                self.metrics.increment(self.m_rejected)
                responses[i] = error_response(problem, pb_utils.TritonError.INVALID_ARG)
            else:
                valid.append(i)
        for group in group_by_shape([arrays[i] for i in valid]):
            indices = [valid[g] for g in group]
            batch, sizes = concat(arrays, indices)
            outputs, error = self._route(batch, len(indices))
            if outputs is not None:
                for i, part in zip(indices, split(outputs, sizes)):
                    responses[i] = tensors_response(part, self.outputs)
                continue
            if len(indices) == 1:
                responses[indices[0]] = error_response(error)
                continue
            for i in indices:  # isolate the request(s) that fail everywhere
                out, err = self._route(arrays[i], 1)
                responses[i] = tensors_response(out, self.outputs) if out is not None else error_response(err)
        return responses
