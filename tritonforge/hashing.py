"""sha256 helpers for the manifest and the no-op check."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_tree(root: Path) -> dict[str, str]:
    """sha256 of every file below `root`, keyed by POSIX path relative to it, sorted."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def combine(parts: dict[str, str]) -> str:
    """One hash over named parts, independent of insertion order."""
    h = hashlib.sha256()
    for key in sorted(parts):
        h.update(key.encode() + b"\0" + str(parts[key]).encode() + b"\n")
    return h.hexdigest()
