"""Tensors in and out of Triton's Python backend, a model's verified settings, and rungs reached through BLS."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from .batching import Batch
from .errors import RequestError, RungAbsent, RungFailure
from .integrity import mismatches, refusal
from .settings import S, from_model_config

# An output's name and the numpy dtype its config gives it.
OutputDtypes = list[tuple[str, Any]]

# Messages of a BLS call to a model the server has not loaded (its code is not always UNAVAILABLE).
NOT_THERE = ("not ready", "unknown model", "no available versions", "is not found", "not loaded")


def verified_settings(args: Mapping[str, str], kind: type[S]) -> tuple[dict[str, Any], S, str]:
    """The model's config (parsed), its settings of `kind` and its version directory, once every file its build
    placed there is the build's: a file that differs raises TritonModelException naming it, so the model is
    UNAVAILABLE with that reason, never READY with wrong answers."""
    name = args["model_name"]
    config = json.loads(args["model_config"])
    settings = from_model_config(config, name, kind)
    version_dir = os.path.join(args["model_repository"], args["model_version"])
    reason = refusal(name, mismatches(version_dir, settings.files))
    if reason:
        raise pb_utils.TritonModelException(reason)
    return config, settings, version_dir


def request_inputs(request: Any, names: Iterable[str]) -> Batch:
    """The named input tensors of one request as numpy arrays."""
    return {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in names}


def error_response(message: str, invalid_argument: bool = False) -> Any:
    """A response carrying one request's error: INVALID_ARG for the request's own fault, else INTERNAL."""
    code = pb_utils.TritonError.INVALID_ARG if invalid_argument else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def tensors_response(outputs: Batch, dtypes: OutputDtypes) -> Any:
    """A response with the named outputs cast to the config's dtypes."""
    return pb_utils.InferenceResponse(
        [pb_utils.Tensor(name, np.ascontiguousarray(outputs[name], dtype=dt)) for name, dt in dtypes]
    )


def output_dtypes(model_config: Mapping[str, Any]) -> OutputDtypes:
    """(name, numpy dtype) of each output in the model config."""
    return [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in model_config["output"]]


class BlsRung:
    """A published variant in its native backend, called at its build's version (a rung of another build is
    never called: after a rebuild it is either this build's version or not loaded)."""

    def __init__(
        self, model: str, version: int, inputs: Mapping[str, str], output_names: Sequence[str], timeout_ms: float
    ) -> None:
        self.name, self.model, self.version = model, model, int(version)
        self.inputs = [(n, pb_utils.triton_string_to_numpy(dt)) for n, dt in inputs.items()]
        self.output_names = list(output_names)
        self.timeout_us = int(float(timeout_ms) * 1000)
        self._absent_codes = {pb_utils.TritonError.UNAVAILABLE, pb_utils.TritonError.NOT_FOUND}

    def call(self, batch: Batch) -> Batch:
        tensors = [pb_utils.Tensor(n, np.ascontiguousarray(batch[n], dtype=dt)) for n, dt in self.inputs]
        response = pb_utils.InferenceRequest(
            model_name=self.model,
            model_version=self.version,
            inputs=tensors,
            requested_output_names=self.output_names,
            timeout=self.timeout_us,
        ).exec()
        if response.has_error():
            error = response.error()
            message, code = error.message(), error.code()
            if code == pb_utils.TritonError.INVALID_ARG:
                raise RequestError(f"{self.model}: {message}")
            if code in self._absent_codes or any(s in message.lower() for s in NOT_THERE):
                raise RungAbsent(message)
            raise RungFailure(message)
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.output_names}

    def ready(self) -> bool:
        return pb_utils.is_model_ready(model_name=self.model, model_version=str(self.version))
