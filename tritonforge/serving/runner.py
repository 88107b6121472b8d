"""An ONNX variant run in-process by ONNX Runtime: the last rungs of the router (and the runner model).

On the local CPU server, where Triton has no onnxruntime backend, these rungs answer every request with no BLS
hop; in a container they are the fallback behind the native models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import Batch
from .errors import RequestError, RungFailure
from .settings import TensorSignature

if TYPE_CHECKING:
    import onnxruntime


def session(path: str | os.PathLike[str], intra_op_threads: int, gpu_device: int | None = None) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    from .ort_options import session_options

    providers: list[Any] = ["CPUExecutionProvider"]
    if gpu_device is not None and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = [("CUDAExecutionProvider", {"device_id": int(gpu_device)}), "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), session_options(intra_op_threads), providers=providers)


class InProcessRung:
    """A rung that runs `path` here. ONNX Runtime's InvalidArgument (an index out of its table, a shape the graph
    refuses) is the request's fault; anything else is this rung's."""

    def __init__(
        self, name: str, path: str, input_names: Sequence[str], output_names: Sequence[str], intra_op_threads: int
    ) -> None:
        self.name = name
        self.session_path = path
        self.session = session(path, intra_op_threads)
        self.input_names, self.output_names = list(input_names), list(output_names)
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        self._request_errors: tuple[type[Exception], ...] = (InvalidArgument,)
        self.warmed = False  # answered a warm-up (see Router)

    def call(self, batch: Batch) -> Batch:
        feed = {n: np.ascontiguousarray(batch[n]) for n in self.input_names}
        try:
            values = self.session.run(self.output_names, feed)
        except self._request_errors as e:
            raise RequestError(f"{self.name}: {str(e).strip()[:400]}") from None
        except Exception as e:
            raise RungFailure(f"{type(e).__name__}: {str(e).strip()[:400]}") from None
        return dict(zip(self.output_names, values, strict=True))

    def ready(self) -> bool:
        return True

    def warm(self, tensors: Sequence[TensorSignature], batch_sizes: Sequence[int], dynamic_dim: int) -> None:
        """Run zeros (or each range's low end) through the session once per batch size. A rung that answered its
        warm-up is known to work: the router may then blame a request it fails alone on the request."""
        for size in batch_sizes:
            batch: Batch = {}
            for t in tensors:
                shape = [size] + [dynamic_dim if d == -1 else d for d in t.dims]
                fill = t.range[0] if t.range and not t.range[0] <= 0 <= t.range[1] else 0
                batch[t.name] = np.full(shape, fill, dtype=np.dtype(t.dtype))
            self.call(batch)
            self.warmed = True
