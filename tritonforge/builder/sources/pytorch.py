"""Source kind 'pytorch': `module:callable` returning an nn.Module, plus an optional state_dict (weights only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tritonforge.builder.sources.base import LoadedSource, TorchSource, factory_file, options_of, torch_runner
from tritonforge.errors import SourceModelError
from tritonforge.spec import BuildSpec
from tritonforge.spec.base import SourceBase
from tritonforge.spec.refs import CALLABLE_REF, import_callable


class PytorchOptions(SourceBase):
    kind: Literal["pytorch"] = "pytorch"
    factory: str | None = Field(None, description="'module:callable' returning an nn.Module")
    factory_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory")
    state_dict: Path | None = Field(None, description="optional state_dict file (loaded weights_only)")

    @model_validator(mode="after")
    def _factory(self) -> PytorchOptions:
        if not self.factory:
            raise ValueError("kind 'pytorch' needs 'factory: module:callable'")
        if not CALLABLE_REF.match(self.factory):
            raise ValueError(f"factory {self.factory!r} must be 'module:callable'")
        return self


class PytorchSource(TorchSource):
    Options = PytorchOptions

    def files(self, spec: BuildSpec) -> dict[str, Path]:
        return factory_file(spec, options_of(spec, PytorchOptions).factory or "") | super().files(spec)

    def load(self, spec: BuildSpec) -> LoadedSource:
        import torch

        opts = options_of(spec, PytorchOptions)
        factory = import_callable(opts.factory or "", spec.base_dir, "source.factory")
        try:
            module = factory(**opts.factory_args)
        except Exception as e:
            raise SourceModelError(f"field 'source.factory': {opts.factory} raised {type(e).__name__}: {e}") from None
        if not isinstance(module, torch.nn.Module):
            raise SourceModelError(f"field 'source.factory': {opts.factory} returned {type(module).__name__}, not an nn.Module")
        if opts.state_dict is not None:
            path = spec.resolve(opts.state_dict)
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
