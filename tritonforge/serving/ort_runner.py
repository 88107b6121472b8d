"""tritonforge in-process ONNX Runtime runner (Triton Python backend).

Runs the ONNX file named by the `onnx_file` parameter with ONNX Runtime inside the Python backend: the CPU
provider, or CUDA when the instance is on a GPU and onnxruntime-gpu is installed. It is how ONNX models are
served where Triton has no onnxruntime backend, and the last rung of the fallback router.
"""

import json
import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from tf_batching import config_parameters, output_dtypes, run_batched


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config_parameters(config)
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            device = int(args.get("model_instance_device_id", "0"))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0") or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.input_names = [i["name"] for i in config["input"]]
        self.outputs = output_dtypes(config)
        self.output_names = [name for name, _ in self.outputs]
        pb_utils.Logger.log_info(f"{args['model_name']}: {os.path.basename(path)} on {self.session.get_providers()[0]}")

    def _compute(self, batch):
        values = self.session.run(self.output_names, batch)
        return dict(zip(self.output_names, values))

    def execute(self, requests):
        return run_batched(requests, self.input_names, self.outputs, self._compute)
