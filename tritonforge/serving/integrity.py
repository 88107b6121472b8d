"""A model's files against the sha256 its build recorded: checked once, at load, before the model says READY.

The build writes the expected hashes into the model's own settings (`files`: path inside the version directory
-> sha256), so they travel with the model wherever the repository is copied. A file that differs (flipped bits,
a partial copy, an edit) makes the model refuse to load, naming the file: Triton then reports it UNAVAILABLE
with that reason instead of serving wrong answers as READY.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                return h.hexdigest()
            h.update(block)


def mismatches(version_dir: str | os.PathLike[str], expected: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(file, expected sha256, what was found) for each file of `expected` that differs or cannot be read."""
    out = []
    for rel in sorted(expected):
        try:
            found = sha256_file(os.path.join(version_dir, rel))
        except OSError as e:
            found = f"unreadable ({e.strerror or type(e).__name__})"
        if found != expected[rel]:
            out.append((rel, expected[rel], found))
    return out


def refusal(model: str, bad: Sequence[tuple[str, str, str]]) -> str:
    """Why `model` must not load, given `mismatches`' result ('' when nothing differs)."""
    if not bad:
        return ""
    files = "; ".join(f"{rel}: expected sha256 {want}, found {found}" for rel, want, found in bad)
    return (
        f"{model}: {len(bad)} file(s) differ from what its build wrote ({files}); the repository was corrupted "
        "or changed after the build: restore it or rebuild"
    )
