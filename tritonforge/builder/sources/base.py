"""What every loader returns: the loaded object and a way to run it as the FP32 reference."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonforge.errors import SourceModelError
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec


@dataclass
class LoadedSource:
    """A loaded source model. `obj` is an nn.Module, ScriptModule, ExportedProgram or an ONNX path."""

    kind: str
    obj: Any
    run: Callable[[Batch], Batch]


def torch_runner(spec: BuildSpec, fn: Callable[..., Any]) -> Callable[[Batch], Batch]:
    """Run a torch callable on a numpy batch (inputs in spec order), outputs keyed by spec output names."""
    import torch

    if any(t.dtype == "string" for t in spec.inputs):
        raise SourceModelError("string inputs cannot be fed to a PyTorch source model; use an ONNX source")

    def run(batch: Batch) -> Batch:
        args = [torch.from_numpy(np.ascontiguousarray(batch[t.name])) for t in spec.inputs]
        try:
            with torch.no_grad():
                out = fn(*args)
        except Exception as e:
            raise SourceModelError(f"source model raised {type(e).__name__} on a validation batch: {e}") from None
        return map_outputs(spec, out)

    return run


def map_outputs(spec: BuildSpec, out: Any) -> Batch:
    """Name a model's outputs (tensor, tuple/list, or mapping) after the spec's outputs."""
    names = [t.name for t in spec.outputs]
    if isinstance(out, Mapping):
        missing = [n for n in names if n not in out]
        if missing:
            raise SourceModelError(f"source model returned keys {sorted(out)}; spec outputs {missing} are missing")
        values = [out[n] for n in names]
    elif isinstance(out, Sequence) and not hasattr(out, "shape"):
        if len(out) != len(names):
            raise SourceModelError(f"source model returned {len(out)} outputs; the spec names {len(names)}: {names}")
        values = list(out)
    else:
        if len(names) != 1:
            raise SourceModelError(f"source model returned one tensor; the spec names {len(names)} outputs: {names}")
        values = [out]
    return {n: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for n, v in zip(names, values, strict=True)}
