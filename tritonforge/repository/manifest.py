"""The build manifest: what went into a build (spec, inputs, tool versions) and the sha256 of every file it wrote."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from tritonforge.errors import RepositoryError
from tritonforge.hashing import sha256_file

MANIFEST_NAME = "tritonforge_manifest.json"
_TOOLS = ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "tritonclient", "tensorrt", "tokenizers")


def _owned_files(model_dir: Path) -> list[Path]:
    """Files of a model directory that the build wrote (Python's bytecode caches excluded)."""
    return sorted(p for p in model_dir.rglob("*")
                  if p.is_file() and p.name != MANIFEST_NAME and "__pycache__" not in p.parts)


def tool_versions() -> dict[str, str]:
    """Versions of the tools whose behaviour shapes the artifacts."""
    out = {"python": platform.python_version()}
    for dist in _TOOLS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class Manifest:
    """Written to `<repo>/<name>/tritonforge_manifest.json`."""

    name: str
    tritonforge_version: str
    fingerprint: str  # hash over everything below that decides the output
    spec_hash: str
    inputs: dict[str, str]  # input name -> sha256 (spec fields naming files, data fingerprints, sources)
    tools: dict[str, str]
    models: list[str]  # Triton model directories this build owns
    artifacts: dict[str, str] = field(default_factory=dict)  # repo-relative path -> sha256
    stages: dict[str, dict] = field(default_factory=dict)  # stage name -> {"key": hash, ...} for incremental rebuilds
    hardware: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, repo: Path) -> Path:
        path = repo / self.name / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    def hash_artifacts(self, repo: Path) -> None:
        """Record the sha256 of every file in the owned model directories (the manifest itself excluded)."""
        self.artifacts = {}
        for model in sorted(self.models):
            for p in _owned_files(repo / model):
                self.artifacts[p.relative_to(repo).as_posix()] = sha256_file(p)

    def intact(self, repo: Path) -> bool:
        """Every recorded artifact is present with its recorded hash, and no owned directory holds extra files."""
        seen = set()
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
        data = json.loads(path.read_text())
        return Manifest(**data)
    except (OSError, ValueError, TypeError) as e:
        raise RepositoryError(f"{path}: unreadable manifest ({e}); remove it or rebuild with --force") from None
