"""What every source kind provides (its spec options, loader, files, tools and exporter), and what every loader
returns: the loaded object and a way to run it as the FP32 reference."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from tritonforge.errors import ExportError, SourceModelError
from tritonforge.extras import require
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec
from tritonforge.spec.base import SourceBase
from tritonforge.spec.refs import import_callable, module_file

if TYPE_CHECKING:
    from tritonforge.builder.data import Dataset
    from tritonforge.builder.exporters import ExportResult

Run = Callable[[Batch], Batch]


@dataclass
class LoadedSource:
    """A loaded source model. `obj` is an nn.Module, ScriptModule, ExportedProgram or an ONNX path."""

    kind: str
    obj: Any
    run: Run


Options = TypeVar("Options", bound=SourceBase)


def options_of(spec: BuildSpec, model: type[Options]) -> Options:
    """The spec's source options, as the kind's own model (a kind's code is only called for its own kind)."""
    if not isinstance(spec.source, model):
        raise TypeError(f"source kind {spec.source.kind!r} is not {model.model_fields['kind'].default!r}")
    return spec.source


class Source(ABC):
    """One `source.kind`. Adding a kind = one module with a Source (its Options: the spec fields it takes, with
    `kind` a Literal of it, and their rules) + one line in tritonforge/builder/sources/__init__.py."""

    Options: ClassVar[type[SourceBase]]
    # module -> the extra of tritonforge that installs it: what this kind imports beyond the base install
    needs: ClassVar[dict[str, str]] = {}
    # False: the source is an ONNX file already, and its "export" is that file (checked): no export to verify
    exports: ClassVar[bool] = True

    @property
    def kind(self) -> str:
        return str(self.Options.model_fields["kind"].default)

    def require(self) -> None:
        """Raise MissingExtraError naming the extra when a module this kind needs is not installed."""
        for module, extra in self.needs.items():
            require(module, extra, f"source kind {self.kind!r}")

    def files(self, spec: BuildSpec) -> dict[str, Path]:
        """Files whose bytes define the source model (hashed into the build fingerprint), by spec field: the files
        its options name; a kind whose model also comes from code adds that code's file."""
        return {f"source.{name}": spec.resolve(path) for name, path in spec.source.file_fields().items()}

    def check(self, spec: BuildSpec) -> None:
        """Refuse, before anything is loaded or exported, a spec that disagrees with what the source's files
        declare (a kind whose files declare nothing checks nothing)."""
        return None

    @abstractmethod
    def load(self, spec: BuildSpec) -> LoadedSource:
        """The source model, ready to run as the reference."""

    def tools(self) -> dict[str, str]:
        """Versions of the packages this kind loads and exports with, beyond tritonforge's own (hashed into the
        build fingerprint)."""
        return {}

    @abstractmethod
    def export(self, source: LoadedSource, spec: BuildSpec, validation: Dataset, out_path: Path) -> ExportResult:
        """Write the FP32 ONNX reference of `source` to `out_path` (the spec's tensor names, dynamic batch,
        checked and shape-inferred); `validation` gives example inputs where the exporter traces."""


class TorchSource(Source):
    """A kind whose model PyTorch runs (a module, TorchScript, an ExportedProgram): exported by torch2onnx."""

    needs: ClassVar[dict[str, str]] = {"torch": "torch"}

    def export(self, source: LoadedSource, spec: BuildSpec, validation: Dataset, out_path: Path) -> ExportResult:
        """torch2onnx, traced on the first 2 validation samples."""
        from tritonforge.builder.exporters import torch2onnx

        example = validation.rebatch(2).batches[0]
        if len(next(iter(example.values()))) < 2:
            raise ExportError("validation data must hold at least 2 samples (an export example batch)")
        return torch2onnx.export(source, spec, example, out_path)


def factory_file(spec: BuildSpec, factory: str) -> dict[str, Path]:
    """{'source.factory': the file of the module a 'module:callable' factory lives in} (imported to find it), or
    nothing when the module has no file."""
    import_callable(factory, spec.base_dir, "source.factory")
    path = module_file(factory)
    return {"source.factory": path} if path is not None else {}


def torch_runner(spec: BuildSpec, fn: Callable[..., Any]) -> Run:
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
