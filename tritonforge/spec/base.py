"""What every section of the build spec is made of, what every variant entry has (each converter adds its own
options on top and registers them: tritonforge.builder.converters), and what every source has (each source kind
adds its fields and their rules and registers them: tritonforge.builder.sources)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

VARIANT_ID = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class Strict(BaseModel):
    """Unknown fields are errors, and a parsed section never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceBase(Strict):
    """Where the trained model comes from: `kind` picks the loader and exporter, whose Options add the fields
    that kind takes (a field it does not take is an error naming it). Every `Path` field names a file that must
    exist (checked when a spec file is loaded)."""

    kind: str

    def file_fields(self) -> dict[str, Path]:
        """{field name: path} of the files this source names (its `Path` fields that are set)."""
        return {name: value for name in type(self).model_fields if isinstance(value := getattr(self, name), Path)}


class VariantBase(Strict):
    """One precision variant to build: `kind` picks the converter, whose Options add the fields it uses."""

    # The build needs the spec's `calibration` section for this kind (static INT8: scales from data).
    needs_calibration: ClassVar[bool] = False

    kind: str
    id: str | None = Field(None, description="name of the variant (default: the kind)")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not VARIANT_ID.match(v):
            raise ValueError(f"variant id {v!r} must match {VARIANT_ID.pattern}")
        return v

    @property
    def variant_id(self) -> str:
        return self.id or self.kind


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
