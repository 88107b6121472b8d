"""Spec sections whose `kind` picks an implementation the builder registers (a source, a variant's converter).

The spec owns the registries; each implementation module registers its options model once
(`VARIANT_KINDS.register(Options)`), and the spec validates an entry against the model its `kind` names. The
builder's packages register on import (`import tritonforge.builder`), so the spec never imports the builder.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import core_schema

Model = TypeVar("Model", bound=BaseModel)


class KindRegistry(Generic[Model]):
    """Options models by their `kind` (a Literal default on the model). Registering a kind twice is an error."""

    def __init__(self, section: str) -> None:
        self.section = section
        self._models: dict[str, type[Model]] = {}

    def register(self, model: type[Model]) -> type[Model]:
        """Add `model` under its `kind`; returns it (usable as a class decorator)."""
        kind = model.model_fields["kind"].default
        if not isinstance(kind, str):
            raise TypeError(f"{model.__name__}: a {self.section} options model needs a default `kind`")
        if kind in self._models and self._models[kind] is not model:
            raise ValueError(
                f"{self.section} kind {kind!r} is registered twice: {self._models[kind].__name__} and {model.__name__}"
            )
        self._models[kind] = model
        return model

    def __contains__(self, kind: object) -> bool:
        return kind in self._models

    def __getitem__(self, kind: str) -> type[Model]:
        return self._models[kind]

    @property
    def kinds(self) -> list[str]:
        return list(self._models)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """Used as `Annotated[Base, REGISTRY]`: a union of the registered models, told apart by `kind`. Built when
        the spec is first validated (BuildSpec defers its schema), after the builder registered its kinds."""
        if not self._models:
            raise RuntimeError(
                f"no {self.section} kinds are registered: import tritonforge.builder before validating a build spec"
            )
        choices: dict[Any, core_schema.CoreSchema] = {k: handler.generate_schema(m) for k, m in self._models.items()}
        return core_schema.tagged_union_schema(choices, discriminator="kind")


VARIANT_KINDS: KindRegistry[Any] = KindRegistry("variant")
SOURCE_KINDS: KindRegistry[Any] = KindRegistry("source")
