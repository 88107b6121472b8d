"""The build manifest: what went into a build (spec, inputs, tool versions) and the sha256 of every file it wrote."""

from __future__ import annotations

import contextlib
import json
import platform
from dataclasses import asdict, dataclass, field
from enum import Enum
from importlib import metadata
from pathlib import Path

from tritonforge.errors import RepositoryError
from tritonforge.hashing import sha256_file
from tritonforge.repository.files import MANIFEST_NAME

_TOOLS = ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "tritonclient", "tensorrt", "tokenizers")


def _owned_files(model_dir: Path) -> list[Path]:
    """Files of a model directory that the build wrote (Python's bytecode caches excluded)."""
    return sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST_NAME and "__pycache__" not in p.parts)


def tool_versions() -> dict[str, str]:
    """Versions of the tools whose behaviour shapes the artifacts."""
    out = {"python": platform.python_version()}
    for dist in _TOOLS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


class Role(str, Enum):
    """What a model of a build is for."""

    PUBLIC = "public"  # what clients call: the serving logic (checks, pre-processing, cache, router)
    RUNG = "rung"  # one published variant in its native backend, called by the router
    RUNNER = "runner"  # the in-process ONNX Runtime runner as a model of its own (the compute path alone)
    FRONT = "front"  # serving.topology ensemble: the ensemble's first step (checks, pre-processing)
    # Retired: the ensemble layout's models before the serving logic became one Python-backend model. No build
    # writes them; they stay so that a repository built then still reads (its next build drops those models).
    CACHE = "cache"
    TOKENIZER = "tokenizer"
    PIPELINE = "pipeline"
    ROUTER = "router"


@dataclass
class ModelRole:
    """One model's role in its build; `variant` and `runtime` for rungs and runners, `file` for the model file
    in its version directory, `order` for a rung's place in the router."""

    role: Role
    variant: str = ""
    runtime: str = ""
    file: str = ""
    order: int = 0

    def to_dict(self) -> dict:
        return {k: (v.value if isinstance(v, Role) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelRole:
        return cls(**{**d, "role": Role(d["role"])})


@dataclass
class Manifest:
    """Written to `<repo>/<name>/tritonforge_manifest.json`."""

    name: str
    tritonforge_version: str
    fingerprint: str  # hash over everything below that decides the output
    spec_hash: str
    inputs: dict[str, str]  # input name -> sha256 (spec fields naming files, data fingerprints, sources)
    tools: dict[str, str]
    version: int  # the Triton model version every model of this build is published as (one more each build)
    roles: dict[str, ModelRole]  # the Triton model directories this build owns, in publication order
    dropped: list[str] = field(default_factory=list)  # models the build before owned and this one removed
    artifacts: dict[str, str] = field(default_factory=dict)  # repo-relative path -> sha256
    stages: dict[str, dict] = field(default_factory=dict)  # stage name -> {"key": hash, ...} for incremental rebuilds
    hardware: dict[str, object] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """The model directories this build owns, compute models first and the public model last."""
        return list(self.roles)

    def to_json(self) -> str:
        data = asdict(self)
        data["roles"] = {m: r.to_dict() for m, r in self.roles.items()}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        data = dict(data)
        if "roles" not in data:  # written before roles were recorded: the models it owns are still its own
            models = data.pop("models")
            data["roles"] = {m: {"role": (Role.PUBLIC if m == data["name"] else Role.RUNG).value} for m in models}
            data.setdefault("version", 1)
        return cls(**{**data, "roles": {m: ModelRole.from_dict(r) for m, r in data["roles"].items()}})

    def write(self, model_dir: Path) -> Path:
        """Write into the public model's directory (staged or live)."""
        path = model_dir / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    def hash_artifacts(self, dirs: dict[str, Path]) -> None:
        """Record the sha256 of every file in the build's model directories, given as model -> directory (staged
        or live), keyed by repository-relative path (the manifest itself excluded)."""
        self.artifacts = {}
        for model in sorted(self.models):
            for p in _owned_files(dirs[model]):
                self.artifacts[f"{model}/{p.relative_to(dirs[model]).as_posix()}"] = sha256_file(p)

    def intact(self, repo: Path) -> bool:
        """Every recorded artifact is present with its recorded hash, and no owned directory holds extra files."""
        seen: set[str] = set()
        for model in self.models:
            if not (repo / model).is_dir():
                return False
            seen.update(p.relative_to(repo).as_posix() for p in _owned_files(repo / model))
        if seen != set(self.artifacts):
            return False
        return all(sha256_file(repo / rel) == digest for rel, digest in self.artifacts.items())


def read_manifest(repo: Path, name: str) -> Manifest | None:
    """The manifest of model `name` in `repo`, or None if there is none."""
    path = Path(repo) / name / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise RepositoryError(f"{path}: unreadable manifest ({e}); remove it or rebuild with --force") from None
