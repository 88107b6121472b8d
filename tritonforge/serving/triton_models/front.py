"""tritonforge ensemble front (Triton Python backend): the first step of the public ensemble (serving.topology:
ensemble). For each request: the input checks (size, shapes, NaN/Inf, value ranges) and, with `preprocess`, the
tokenizer; its outputs are the compute step's inputs. A request's bad input is its own INVALID_ARG, which the
ensemble returns to the client as it is; the compute step never sees it.

Settings come from the `tritonforge` parameter (settings.py, FrontSettings), files checked at load as the
public model's are (integrity.py).
"""

import sys

sys.dont_write_bytecode = True  # nothing written into the repository (it may be read-only or shared)

import os
from typing import Any

import triton_python_backend_utils as pb_utils
from tritonforge_serving.checks import InputChecks
from tritonforge_serving.errors import RequestError
from tritonforge_serving.settings import FrontSettings
from tritonforge_serving.tokenize import TextEncoder
from tritonforge_serving.triton_io import error_response, output_dtypes, request_inputs, tensors_response, verified_settings


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.name = args["model_name"]
        config, s, version_dir = verified_settings(args, FrontSettings)
        self.outputs = output_dtypes(config)
        # the compute step's inputs, in the config's order of the model's inputs, named for the ensemble
        self.renames = dict(zip([t.name for t in s.model_inputs], [n for n, _ in self.outputs], strict=True))
        self.public_inputs = [t.name for t in s.inputs]
        self.checks = InputChecks(s.inputs + s.model_inputs, s.max_request_bytes, s.reject_nonfinite)
        self.encoder: TextEncoder | None = None
        if s.preprocess is not None:
            names = [t.name for t in s.model_inputs]
            self.encoder = TextEncoder(os.path.join(version_dir, s.preprocess.file), s.preprocess, names)
        pb_utils.Logger.log_info(f"{self.name}: checks" + (" and tokenizer" if self.encoder else "") + f" for {s.front}")

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        owners: list[int] = []
        texts: list[list[str]] = []
        for i, request in enumerate(requests):
            try:
                arrays = request_inputs(request, self.public_inputs)
                self.checks.check(arrays)
                if self.encoder is None:
                    responses[i] = tensors_response(self._renamed(arrays), self.outputs)
                else:
                    texts.append(self.encoder.texts(arrays))
                    owners.append(i)
            except RequestError as e:
                responses[i] = error_response(str(e), invalid_argument=True)
        if owners:
            assert self.encoder is not None
            for i, encoded in zip(owners, self.encoder.encode(texts), strict=True):  # one tokenizer call for all
                responses[i] = tensors_response(self._renamed(encoded), self.outputs)
        return responses

    def _renamed(self, arrays: dict) -> dict:
        return {self.renames[name]: value for name, value in arrays.items()}
