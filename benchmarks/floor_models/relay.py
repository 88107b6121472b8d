"""Bare BLS pass-through (Triton Python backend), used only by benchmarks.miss_path_floor.

Sends each request's input tensors unchanged to the model named by the `target` parameter and returns its
output tensors unchanged: one BLS hop with no logic, the floor any Python-backend model in a chain pays.
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.target = config["parameters"]["target"]["string_value"]
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [pb_utils.get_input_tensor_by_name(request, n) for n in self.inputs]
            reply = pb_utils.InferenceRequest(model_name=self.target, inputs=inputs,
                                              requested_output_names=self.outputs).exec()
            if reply.has_error():
                responses.append(pb_utils.InferenceResponse(error=reply.error()))
                continue
            responses.append(pb_utils.InferenceResponse(reply.output_tensors()))
        return responses
