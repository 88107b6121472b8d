"""Source kind 'pytorch': `module:callable` returning an nn.Module, plus an optional state_dict (weights only)."""

from __future__ import annotations

from pathlib import Path

from tritonforge.builder.sources.base import LoadedSource, torch_runner
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec
from tritonforge.spec.refs import import_callable, module_file


def files(spec: BuildSpec) -> dict[str, Path]:
    import_callable(spec.source.factory or "", spec.base_dir, "source.factory")
    out = {}
    src = module_file(spec.source.factory or "")
    if src is not None:
        out["source.factory"] = src
    if spec.source.state_dict is not None:
        out["source.state_dict"] = spec.resolve(spec.source.state_dict)
    return out


def load(spec: BuildSpec) -> LoadedSource:
    import torch

    factory = import_callable(spec.source.factory or "", spec.base_dir, "source.factory")
    try:
        module = factory(**spec.source.factory_args)
    except Exception as e:
        raise SourceModelError(f"field 'source.factory': {spec.source.factory} raised {type(e).__name__}: {e}") from None
    if not isinstance(module, torch.nn.Module):
        raise SourceModelError(
            f"field 'source.factory': {spec.source.factory} returned {type(module).__name__}, not an nn.Module"
        )
    if spec.source.state_dict is not None:
        path = spec.resolve(spec.source.state_dict)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise SourceModelError(f"field 'source.state_dict': cannot load {path} (weights only): {e}") from None
        try:
            module.load_state_dict(state)
        except Exception as e:
            raise SourceModelError(f"field 'source.state_dict': {path} does not fit the module: {e}") from None
    module.eval()
    return LoadedSource("pytorch", module, torch_runner(spec, module))
