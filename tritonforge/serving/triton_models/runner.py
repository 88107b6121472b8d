"""tritonforge runner model (Triton Python backend): one ONNX variant run in-process by ONNX Runtime.

The compute path alone, without the serving logic: what the public model runs inside itself on a server with
no onnxruntime backend, as a model of its own (for benchmarks and direct calls). Requests of one shape go
as one batch; a batch that fails is retried request by request, so an error reaches only its own request.
"""

import sys

sys.dont_write_bytecode = True  # nothing written into the repository (it may be read-only or shared)

import json
import os
from typing import Any

import triton_python_backend_utils as pb_utils
from tritonforge_serving.errors import RequestError
from tritonforge_serving.integrity import mismatches, refusal
from tritonforge_serving.router import Router
from tritonforge_serving.runner import InProcessRung
from tritonforge_serving.settings import RunnerSettings, from_model_config
from tritonforge_serving.tally import Tally
from tritonforge_serving.triton_io import error_response, output_dtypes, request_inputs, tensors_response


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        s = from_model_config(config, args["model_name"], RunnerSettings)
        self.input_names = [i["name"] for i in config["input"]]
        self.outputs = output_dtypes(config)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        reason = refusal(args["model_name"], mismatches(version_dir, s.files))
        if reason:  # a file that is not the build's: UNAVAILABLE with that reason, never READY with wrong answers
            raise pb_utils.TritonModelException(reason)
        path = os.path.join(version_dir, s.file)
        rung = InProcessRung(s.variant, path, self.input_names, [n for n, _ in self.outputs], s.intra_op_threads)
        self.router = Router([rung], 1, 0.0, Tally(), {"model": args["model_name"]})
        pb_utils.Logger.log_info(f"{args['model_name']}: {s.file} ({s.variant}) on {rung.session.get_providers()[0]}")

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [request_inputs(r, self.input_names) for r in requests]
        results = self.router.route_requests(arrays, range(len(requests)))
        ordered = [results[i] for i in range(len(requests))]
        return [
            tensors_response(r, self.outputs)
            if isinstance(r, dict)
            else error_response(str(r), invalid_argument=isinstance(r, RequestError))
            for r in ordered
        ]
