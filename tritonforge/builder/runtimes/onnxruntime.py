"""ONNX Runtime: ONNX files, served by Triton's onnxruntime backend; the build runs them in-process (the reference
runtime, and every ONNX source) or, on CPU, in the serving environment's worker (tritonforge.builder.serving_ort).
Sessions take their options from the serving package's one factory (tritonforge/serving/ort_options.py), so the
build runs the configuration the server runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge.builder.runtimes.base import Batch, Layout, Opened, Runtime
from tritonforge.serving.ort_options import session_options

if TYPE_CHECKING:
    from tritonforge.builder.serving_ort import RemoteSession, ServingOrt
    from tritonforge.repository import config as cfg
    from tritonforge.spec import TensorSpec

MODEL_FILE = "model.onnx"


def providers() -> list[str]:
    """CUDA when onnxruntime-gpu and a GPU are present (as Triton's onnxruntime backend would use), else CPU."""
    import onnxruntime as ort

    from tritonforge.hardware import cuda_device_reason

    if "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_reason() is None:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


class OrtModel:
    """An ONNX Runtime session over one file; `run` maps input names to arrays and back."""

    def __init__(
        self, path: Path, output_names: list[str] | None = None, threads: int = 0, providers: list[str] | None = None
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session: Any = ort.InferenceSession(
            str(path), session_options(threads), providers=providers or ["CPUExecutionProvider"]
        )
        self.input_names: list[str] = [i.name for i in self.session.get_inputs()]
        self.output_names: list[str] = output_names or [o.name for o in self.session.get_outputs()]

    def run(self, batch: Batch) -> Batch:
        feed = {name: batch[name] for name in self.input_names}
        values = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, values, strict=True))


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    backend = "onnxruntime"
    platform = "onnxruntime_onnx"
    instance_kind = "auto"

    def open(self, path: Path, input_names: list[str], output_names: list[str], threads: int = 0) -> Opened:
        chosen = providers()
        model = OrtModel(path, output_names, threads=threads, providers=chosen)
        device = chosen[0].replace("ExecutionProvider", "")
        return Opened(model.run, device, f"onnxruntime {version()} (build environment)")

    def open_in_serving_environment(
        self, ort: ServingOrt, path: Path, output_names: list[str], threads: int
    ) -> RemoteSession | None:
        """On CPU the serving environment's ONNX Runtime runs the file (what the server imports); with CUDA the
        build's own does (the worker runs CPU sessions only)."""
        if providers() != ["CPUExecutionProvider"]:
            return None
        return ort.open(path, output_names, threads)

    def layout(
        self,
        name: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        scheduling: cfg.Scheduling,
        path: Path,
    ) -> Layout:
        from tritonforge.repository import config as cfg

        return Layout(cfg.onnxruntime_model(name, inputs, outputs, scheduling, MODEL_FILE), {MODEL_FILE: path})
