"""Which Triton model directories a build writes, with their configs and files, and writing them out."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.repository.config import pin_version, write_config
from tritonforge.repository.manifest import ModelRole


class StagedFiles:
    """Places a build's files into its staged model directories: each source file is copied once and every later
    use of the same source hard-links that copy.

    A published file never shares an inode with a file outside the staging (the last build's live files, which a
    build reuses, or the build's work directory): linking or unlinking such a file changes its ctime, Triton's
    poll reads that as a change to the live model and reloads it while the publication replaces it (a model
    loaded from a directory listing that no longer exists fails, and a polling server keeps the old build)."""

    def __init__(self) -> None:
        self._first: dict[Path, Path] = {}

    def place(self, src: Path, dst: Path) -> None:
        """Put the bytes of `src` at `dst`."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        key = src.resolve()
        first = self._first.get(key)
        if first is not None:
            try:
                os.link(first, dst)
                return
            except OSError:
                pass  # a filesystem without hard links: a copy
        shutil.copy2(src, dst)
        self._first.setdefault(key, dst)


@dataclass
class ModelDir:
    """One Triton model: its config, its role in the build, and the files of its version directory (path inside
    the version directory -> source file or bytes)."""

    name: str
    config: mc.ModelConfig
    role: ModelRole
    files: dict[str, Path | bytes] = field(default_factory=dict)
    extra: dict[str, Path | bytes] = field(default_factory=dict)  # files beside config.pbtxt

    def write(self, model_dir: Path, version: int, staged: StagedFiles | None = None) -> Path:
        """Write config.pbtxt (serving exactly `version`) and the version directory into `model_dir`; `staged`
        shares one copy of a source file between the model directories of one build."""
        if staged is None:
            staged = StagedFiles()
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
                staged.place(Path(content), dst)
        return model_dir
