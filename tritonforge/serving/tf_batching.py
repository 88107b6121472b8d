"""Batching helpers shared by tritonforge's Python-backend models (copied next to each model.py).

Triton's dynamic batcher hands `execute` a list of requests; these helpers concatenate requests whose
per-item shapes agree into one batch and split results back, so one bad request can be isolated.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


def request_inputs(request, names):
    """The named input tensors of one request as numpy arrays."""
    return {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in names}


def group_by_shape(arrays_per_request):
    """Indices of requests grouped so that every input has the same per-item shape and dtype within a group."""
    groups = {}
    for i, arrays in enumerate(arrays_per_request):
        key = tuple((name, a.shape[1:], a.dtype.str) for name, a in sorted(arrays.items()))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def concat(arrays_per_request, indices):
    """One batch from the requests at `indices`, and each request's batch size."""
    sizes = [len(next(iter(arrays_per_request[i].values()))) for i in indices]
    names = arrays_per_request[indices[0]].keys()
    batch = {n: np.concatenate([arrays_per_request[i][n] for i in indices]) for n in names}
    return batch, sizes


def split(outputs, sizes):
    """Per-request slices of a batch of outputs."""
    parts, start = [], 0
    for size in sizes:
        parts.append({n: v[start:start + size] for n, v in outputs.items()})
        start += size
    return parts


def error_response(message, code=None):
    """A response that carries one request's error."""
    if code is None:
        code = pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def tensors_response(outputs, dtypes):
    """A response with the named outputs cast to the config's dtypes."""
    return pb_utils.InferenceResponse(
        [pb_utils.Tensor(name, np.ascontiguousarray(outputs[name], dtype=dt)) for name, dt in dtypes]
    )


def config_parameters(model_config):
    """The string parameters of a model config (the JSON that Triton passes to initialize)."""
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def output_dtypes(model_config):
    """(name, numpy dtype) of each output in the model config."""
    return [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in model_config["output"]]


def run_batched(requests, input_names, output_dtypes, compute):
    """Answer `requests`, batching those with equal shapes into one `compute(batch) -> outputs` call.

    A failed batch is retried request by request, so an error reaches only the request that caused it.
    """
    responses = [None] * len(requests)
    arrays = [request_inputs(r, input_names) for r in requests]
    for indices in group_by_shape(arrays):
        batch, sizes = concat(arrays, indices)
        try:
            parts = split(compute(batch), sizes)
        except Exception as e:
            if len(indices) == 1:
                responses[indices[0]] = error_response(f"{type(e).__name__}: {e}")
                continue
            for i in indices:
                try:
                    responses[i] = tensors_response(compute(arrays[i]), output_dtypes)
                except Exception as e2:
                    responses[i] = error_response(f"{type(e2).__name__}: {e2}")
            continue
        for i, part in zip(indices, parts):
            responses[i] = tensors_response(part, output_dtypes)
    return responses
