"""Which Triton model directories a build writes, with their configs and files, and writing them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge import serving
from tritonforge.repository.config import write_config
from tritonforge.repository.transaction import link_or_copy


@dataclass
class ModelDir:
    """One Triton model: its config and the files of version 1 (path inside `1/` -> source file or bytes)."""

    name: str
    config: mc.ModelConfig
    files: dict[str, Path | bytes] = field(default_factory=dict)
    extra: dict[str, Path | bytes] = field(default_factory=dict)  # files beside config.pbtxt

    def write(self, root: Path) -> Path:
        model_dir = root / self.name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        write_config(self.config, model_dir)
        for rel, content in list(self.files.items()) + [(f"../{k}", v) for k, v in self.extra.items()]:
            dst = (model_dir / "1" / rel).resolve()
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dst.write_bytes(content)
            else:
                link_or_copy(Path(content), dst)
        return model_dir


def python_model_files(kind: str, **data: Path | bytes) -> dict[str, Path | bytes]:
    """model.py for a Python-model kind, its helper modules, and any data files. The sources are copied as
    bytes, never hard-linked: editing a deployed repository must not edit the installed package, or back."""
    files: dict[str, Path | bytes] = {"model.py": serving.model_source(kind).read_bytes()}
    files.update({p.name: p.read_bytes() for p in serving.helper_sources()})
    files.update(data)
    return files
