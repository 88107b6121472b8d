"""The serving logic that runs inside Triton's Python backend, as plain modules.

A build copies these modules into the public model's version directory as the package `tritonforge_serving`
(imports between them are relative, so they work under either name), beside the model.py taken from
`triton_models/`. They import numpy and, where their feature is used, onnxruntime, redis and tokenizers: the
packages of the serving environment (tritonforge/serving/requirements.txt), which the container installs too.
Only `triton_io.py`, `metrics.py` and the model files import Triton's `triton_python_backend_utils`; the other
modules are unit-tested without a server.
"""
