"""Zero-compute stand-in for a runner model (Triton Python backend), used only by benchmarks.miss_path_floor.

Answers each request with zeros of the config's output shapes, so a chain that ends here measures the serving
logic and the hops in front of it, not the model.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"]),
                         [d if d > 0 else 1 for d in o["dims"]]) for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, self.inputs[0]).as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, np.zeros([n, *dims], dtype)) for name, dtype, dims in self.outputs]))
        return responses
