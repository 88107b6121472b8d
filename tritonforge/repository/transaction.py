"""Atomic writes to a model repository: stage a full copy beside it, then swap the two directories at once.

The live repository is never written in place. Unchanged entries are hard-linked into the staging copy, the
build writes its models there, and `commit` exchanges staging and live with renameat2(RENAME_EXCHANGE), so a
reader (or Triton) sees either the whole old repository or the whole new one. A failed or killed build leaves
only a staging directory, which the next build removes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tritonforge.errors import RepositoryError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths. False if the kernel or filesystem cannot (then the caller falls back)."""
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same bytes, no copy), copying where links are impossible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: Path, dst: Path) -> None:
    """Mirror a directory tree with hard links."""
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            link_or_copy(Path(root) / name, dst / rel / name)


class RepositoryTransaction:
    """Stage changes to `repo` and publish them atomically.

    with RepositoryTransaction(repo, replace={"digits", "digits_ort"}) as txn:
        ... write new model directories under txn.path ...
        txn.commit()
    """

    def __init__(self, repo: Path, replace: Iterable[str] = ()) -> None:
        self.repo = Path(repo).absolute()
        self.replace = set(replace)
        self.parent = self.repo.parent
        self._prefix = f".{self.repo.name}."
        self._lock_file = None
        self.path: Path | None = None
        self.committed = False

    def __enter__(self) -> RepositoryTransaction:
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.parent / f"{self._prefix}lock", "w")
        except OSError as e:
            raise RepositoryError(f"cannot write next to {self.repo}: {e}") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RepositoryError(f"another build is writing {self.repo} (lock {self._lock_file.name})") from None
        self._recover()
        self.path = Path(tempfile.mkdtemp(prefix=f"{self._prefix}staging-", dir=self.parent))
        if self.repo.is_dir():
            for entry in self.repo.iterdir():
                if entry.name in self.replace:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    link_tree(entry, self.path / entry.name)
                else:
                    link_or_copy(entry, self.path / entry.name)
        return self

    def _recover(self) -> None:
        """Undo what an earlier killed build left: restore a repository caught between renames, drop leftovers."""
        leftovers = sorted(self.parent.glob(f"{self._prefix}staging-*")) + sorted(self.parent.glob(f"{self._prefix}old-*"))
        if not self.repo.exists():
            olds = sorted(self.parent.glob(f"{self._prefix}old-*"))
            if olds:
                os.rename(olds[-1], self.repo)
                leftovers.remove(olds[-1])
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)

    def commit(self) -> None:
        """Publish the staged repository in one step."""
        assert self.path is not None
        if not self.repo.exists():
            os.rename(self.path, self.repo)
        elif exchange(self.path, self.repo):
            shutil.rmtree(self.path, ignore_errors=True)
        else:  # no RENAME_EXCHANGE here: two renames; _recover() repairs a crash between them
            old = Path(tempfile.mkdtemp(prefix=f"{self._prefix}old-", dir=self.parent))
            os.rmdir(old)
            os.rename(self.repo, old)
            os.rename(self.path, self.repo)
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True

    def __exit__(self, *exc) -> None:
        if not self.committed and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
