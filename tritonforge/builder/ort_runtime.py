"""Run an ONNX file in-process with ONNX Runtime: the reference runtime for ONNX variants."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from tritonforge.serving.batching import Batch


def session_options(threads: int = 0) -> ort.SessionOptions:
    """ONNX Runtime session options: full graph optimisation, `threads` intra-op threads (0: runtime default)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return so


class OrtModel:
    """An ONNX Runtime session over one file; `run` maps input names to arrays and back."""

    def __init__(
        self, path: Path, output_names: list[str] | None = None, threads: int = 0, providers: list[str] | None = None
    ) -> None:
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers or ["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = output_names or [o.name for o in self.session.get_outputs()]

    def run(self, batch: Batch) -> Batch:
        feed = {name: batch[name] for name in self.input_names}
        values = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, values, strict=True))
