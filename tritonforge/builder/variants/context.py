"""What every variant stage reads: one typed context, and the stage keys built from it."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from tritonforge.builder.converters.fusion import FusedGraph, fused_graph
from tritonforge.builder.data import Dataset
from tritonforge.builder.serving_ort import ServingOrt
from tritonforge.builder.stages import StageCache
from tritonforge.builder.verify import Outputs
from tritonforge.hashing import combine, sha256_file
from tritonforge.spec import BuildSpec


class Reporter(Protocol):
    """Receives progress; the CLI renders it with rich, the library default is silent."""

    def stage(self, name: str) -> contextlib.AbstractContextManager: ...

    def info(self, message: str) -> None: ...


@dataclass(frozen=True)
class ServedData:
    """Held-out samples as served (texts padded to the serving buckets), and FP32's outputs on them."""

    data: Dataset
    reference: Outputs


@dataclass(frozen=True)
class BuildContext:
    """One build's inputs to its variant stages."""

    spec: BuildSpec
    fp32: Path  # the verified FP32 ONNX file
    validation: Dataset
    reference: Outputs  # FP32's outputs on the validation data
    calibration: Dataset | None
    work: Path  # the build's work directory
    stages: StageCache
    repo: Path
    tools: dict[str, str]
    reporter: Reporter
    ort: ServingOrt | None = None  # the serving runtime every ONNX figure comes from (None: this process's)
    served: ServedData | None = None  # held-out texts as the tokenizer serves them (tokenizer-fronted models)
    subnormal_weights: int = 0  # how many weights of the FP32 graph are subnormal

    @cached_property
    def fp32_sha(self) -> str:
        return sha256_file(self.fp32)

    @cached_property
    def fused(self) -> FusedGraph:
        """The build's fused FP32 graph (made on first use, once), or why there is none."""
        return fused_graph(self.fp32, self.work, self.validation.batches[0])

    @property
    def inputs(self) -> list[str]:
        return [t.name for t in self.spec.inputs]

    @property
    def outputs(self) -> list[str]:
        return [t.name for t in self.spec.outputs]

    def key(self, **parts: object) -> str:
        """A stage key over the conversion code, the FP32 file and the tool versions, and `parts`."""
        return stage_key(code=conversion_code(), fp32=self.fp32_sha, tools=self.tools, **parts)


def _key_part(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, sort_keys=True)


def stage_key(**parts: object) -> str:
    """One hash over named parts: strings as they are, spec sections and other values as sorted JSON."""
    return combine({name: _key_part(value) for name, value in parts.items()})


@lru_cache(maxsize=1)
def conversion_code() -> str:
    """One hash over the code that makes, gates and searches variants: a rebuild after that code changed never
    replays a result it recorded before."""
    from tritonforge.builder import converters, gate, int8_search, verify

    files = sorted(Path(converters.__file__).parent.glob("*.py")) + [Path(m.__file__) for m in (gate, int8_search, verify)]  # type: ignore[arg-type]
    return combine({p.name: sha256_file(p) for p in files})
