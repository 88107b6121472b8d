"""tritonforge runner model (Triton Python backend): one ONNX variant run in-process by ONNX Runtime.

The compute path alone, without the serving logic: what the public model runs inside itself on a server with
no onnxruntime backend, as a model of its own (for benchmarks and direct calls). Requests of one shape go
as one batch; a batch that fails is retried request by request, so an error reaches only its own request.
"""

import sys

sys.dont_write_bytecode = True  # nothing written into the repository (it may be read-only or shared)

import os
from typing import Any

import triton_python_backend_utils as pb_utils
from tritonforge_serving.errors import RequestError
from tritonforge_serving.router import Router
from tritonforge_serving.runner import InProcessRung
from tritonforge_serving.settings import RunnerSettings
from tritonforge_serving.tally import Tally
from tritonforge_serving.triton_io import error_response, output_dtypes, request_inputs, tensors_response, verified_settings


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config, s, version_dir = verified_settings(args, RunnerSettings)
        self.input_names = [i["name"] for i in config["input"]]
        self.outputs = output_dtypes(config)
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
