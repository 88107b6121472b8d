"""Which Triton model directories a build writes, with their configs and files, and writing them out."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.repository.config import pin_version, write_config
from tritonforge.repository.manifest import ModelRole


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same bytes, no copy), copying where links are impossible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass
class ModelDir:
    """One Triton model: its config, its role in the build, and the files of its version directory (path inside
    the version directory -> source file or bytes)."""

    name: str
    config: mc.ModelConfig
    role: ModelRole
    files: dict[str, Path | bytes] = field(default_factory=dict)
    extra: dict[str, Path | bytes] = field(default_factory=dict)  # files beside config.pbtxt

    def write(self, model_dir: Path, version: int) -> Path:
        """Write config.pbtxt (serving exactly `version`) and the version directory into `model_dir`."""
        (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
        config = mc.ModelConfig()
        config.CopyFrom(self.config)
        pin_version(config, version)
        write_config(config, model_dir)
        for rel, content in list(self.files.items()) + [(f"../{k}", v) for k, v in self.extra.items()]:
            dst = Path(os.path.normpath(model_dir / str(version) / rel))
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dst.write_bytes(content)
            else:
                link_or_copy(Path(content), dst)
        return model_dir
