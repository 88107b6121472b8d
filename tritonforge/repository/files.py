"""The names of the files a build keeps in a repository: one place for the writer and every reader.

`tritonforge/server/probe.py` keeps its own copies (the serving image copies that file alone, without this
package); tests/unit/repository/test_build_report.py holds them equal.
"""

from __future__ import annotations

MANIFEST_NAME = "tritonforge_manifest.json"  # in the public model's directory: what went into its build

# Beside the report in the public model's directory.
REPORT_JSON = "build_report.json"
REPORT_MD = "build_report.md"
VALIDATION_NPZ = "validation_inputs.npz"
REFERENCE_NPZ = "reference_outputs.npz"
CALIBRATION_NPZ = "calibration_inputs.npz"
PUBLIC_INPUTS_NPZ = "public_inputs.npz"  # samples of what clients send to the public model (perf input data)
PROBE_REQUEST = "probe_request.json"  # one held-out sample as a KServe v2 request (tritonforge/server/probe.py)
PROBE_EXPECTED = "probe_expected.json"  # its FP32 reference, output kinds and thresholds (builder/probe_sample.py)

# In a Python model's version directory, beside model.py.
SERVING_PACKAGE = "tritonforge_serving"  # the name tritonforge/serving/ is copied under
RUNNER_FILE = "runner.onnx"  # the in-process runner's variant
FP32_FILE = "runner_fp32.onnx"  # the FP32 last rung, when the runner's variant is not FP32
TOKENIZER_FILE = "tokenizer.json"
# A plain file of this name: the Python-backend stub imports model.py with bytecode writing on, and a file where
# the directory would be makes Python skip the write.
NO_BYTECODE = "__pycache__"
# The public model's config parameter holding the response cache size its build asks the server for
# (serving.triton_cache): read by `tritonforge serve`, the local server and the serving image's entrypoint.
TRITON_CACHE_BYTES = "tritonforge_triton_cache_bytes"
