"""The ONNX Runtime session options every session of a build uses: the in-process rungs and the runner model
(runner.py), the serving-environment worker the build gates and times ONNX variants in (ort_worker.py), and the
build's own ONNX Runtime (tritonforge.builder.runtimes.onnxruntime). One factory, so the build times the
configuration it serves.

Imports only onnxruntime (this module is copied into the repository and runs in the serving environment).
"""

from typing import Any


def session_options(intra_op_threads: int = 0) -> Any:  # an onnxruntime.SessionOptions (the package is untyped)
    """Full graph optimisation, `intra_op_threads` threads per operator (0: ONNX Runtime's default), one
    inter-operator thread (every instance runs one batch at a time; Triton parallelises across instances), and
    only errors logged."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(intra_op_threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options
