"""Publishing a build's model directories into a repository that may be serving: one directory at a time, each
swapped whole, with a journal that lets the next build undo a publication a `kill -9` interrupted.

The repository root is never replaced, re-created, or written outside the directories a build owns: a server or
container that mounts the root (or anything mounted inside it) keeps seeing the same directory. Each model
directory is staged complete in a work area on the same filesystem and exchanged with the live one by
renameat2(RENAME_EXCHANGE), so a reader sees the old directory or the new one, never a mix; the old one is then
deleted without following symlinks or crossing into another filesystem.

The work area is `.<repo>.tritonforge/` beside the repository when that is on the same filesystem and writable,
else `<repo>/.tritonforge/` (Triton lists that one as a model it cannot load; it holds no config). It stays
beside the repository, not in a cache directory, on purpose: a staged directory is swapped in by a rename, which
only works within one filesystem, and a cache directory (~/.cache, /tmp) is often on another; inside the
repository it would be one more model in every server's list. It holds the builds' lock, the journal of a
publication in progress (what lets the next build roll back one a `kill -9` interrupted) and, during a build,
the staged model directories; a README.txt in it says so, and the build that creates it says so once. Delete
it only when no build of the repository runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from tritonforge.errors import RepositoryError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)  # the C library this process runs on (no ldconfig lookup)
JOURNAL = "journal.json"
INSIDE_WORK_AREA = ".tritonforge"
WORK_AREA_README = "README.txt"


def describe_work_area(area: Path, repo: Path) -> str:
    """What the work area is, in one line (the build says it once; README.txt in the area says it for good)."""
    return (
        f"work area: {area} holds the lock, the publication journal and the staging of builds of {repo}; it is "
        "beside the repository because a model directory is swapped in by a rename within one filesystem; delete "
        "it only when no build runs"
    )


def _announce(area: Path, repo: Path) -> bool:
    """Write the work area's README.txt if it has none; True if this call wrote it (the build then says so)."""
    readme = area / WORK_AREA_README
    if readme.exists():
        return False
    with contextlib.suppress(OSError):  # a work area that takes no README still works
        readme.write_text(describe_work_area(area, repo).replace("; ", ";\n") + "\n")
        return True
    return False


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


def remove_tree(path: Path) -> list[Path]:
    """Delete `path` and what is below it without following a symlink (a link is removed, never its target) or
    entering another filesystem (a mount point is left where it is, with the directories above it).
    Returns the mount points left in place (a publication refuses to start with one inside a directory it
    replaces, so this is a safety net)."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return []
    kept: list[Path] = []

    def walk(directory: Path, device: int) -> bool:
        """Empty and remove `directory`; False if something had to stay."""
        whole = True
        with os.scandir(directory) as entries:
            items = list(entries)
        for entry in items:
            child = Path(entry.path)
            info = os.lstat(child)
            if stat.S_ISDIR(info.st_mode):
                if info.st_dev != device or os.path.ismount(child):
                    kept.append(child)
                    whole = False
                elif not walk(child, device):
                    whole = False
            else:
                os.unlink(child)
        if whole:
            os.rmdir(directory)
        return whole

    walk(Path(path), top.st_dev)
    return kept


def mount_points(path: Path) -> list[Path]:
    """Mount points at or below `path` (never following a symlink)."""
    found, device = [], os.lstat(path).st_dev
    for root, dirs, _files in os.walk(path):
        for name in list(dirs):
            child = Path(root) / name
            if os.lstat(child).st_dev != device or os.path.ismount(child):
                found.append(child)
                dirs.remove(name)
    return found


def check_root(repo: Path) -> Path:
    """`repo` as an absolute path that is a directory or does not exist yet; a file or a symlink is an error."""
    repo = Path(os.path.abspath(repo))
    if repo.is_symlink():
        raise RepositoryError(
            f"--repo {repo} is a symbolic link; give the directory itself "
            f"({os.path.realpath(repo)}), so a build never writes through a link"
        )
    if repo.exists() and not repo.is_dir():
        raise RepositoryError(f"--repo {repo} is a file, not a directory")
    return repo


def work_area(repo: Path) -> Path:
    """Where builds of `repo` stage, journal and lock: beside it on the same filesystem, else inside it."""
    parent = repo.parent
    with contextlib.suppress(OSError):
        if os.stat(parent).st_dev == os.stat(repo).st_dev and os.access(parent, os.W_OK | os.X_OK):
            return parent / f".{repo.name}.tritonforge"
    return repo / INSIDE_WORK_AREA


class RepositoryLock:
    """The one lock builds of a repository take, from the moment they read its state until they have published:
    a build that finds it held waits (up to `wait_s`, saying so once through `on_wait`), so two builds of one
    spec never both read the same last build and publish the same version.

    The lock file lies in the work area, so the repository itself gets nothing new. For a repository that does
    not exist yet it is the work area it will have beside it (a build that fails leaves no repository); only
    where that parent is not writable is the repository created to hold it."""

    def __init__(
        self, repo: Path, wait_s: float = 900.0, on_wait: Callable[[str], object] | None = None, poll_s: float = 0.2
    ) -> None:
        self.repo, self.wait_s, self.on_wait, self.poll_s = check_root(repo), wait_s, on_wait, poll_s
        self._file: IO[str] | None = None
        self.area: Path | None = None
        self.announced = False  # this build wrote the work area's README.txt (its first build): say so once

    def _area(self) -> Path:
        if not self.repo.exists():
            parent = self.repo.parent
            if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
                return parent / f".{self.repo.name}.tritonforge"  # what work_area gives once the repository exists
            self.repo.mkdir(parents=True)
        return work_area(self.repo)

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> RepositoryLock:
        import time

        try:
            area = self._area()
            area.mkdir(parents=True, exist_ok=True)
            lock = open(area / "lock", "w")
        except OSError as e:
            raise RepositoryError(f"cannot write {self.repo}: {e.strerror or e}") from None
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    lock.close()
                    raise RepositoryError(
                        f"another build has been writing {self.repo} for over {self.wait_s:.0f}s "
                        f"(lock {area / 'lock'}); try again when it has finished"
                    ) from None
                if not told and self.on_wait is not None:
                    self.on_wait(
                        f"waiting for another build of {self.repo} to finish (lock {area / 'lock'}, up to {self.wait_s:.0f}s)"
                    )
                    told = True
                time.sleep(self.poll_s)
        self._file = lock
        self.area = area
        self.announced = _announce(area, self.repo)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@dataclass
class Step:
    """One change to the live repository: `model` exchanged with, created from, or moved out to `staged`."""

    model: str
    op: str  # exchange | create | remove
    inode: int  # of the directory that is live after the step (the staged one; for remove: the one moved out)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _inode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


class Publication:
    """Stage a build's model directories and publish them into `repo`.

    with Publication(repo, order=["m_onnx_fp16", "m"], remove={"m_old"}) as pub:
        model_dir = pub.stage("m")     # an empty directory to write the new `m` into
        ...
        pub.commit()

    `order` is the publication order (compute models first, the public model last, so a public model is only
    ever live beside the compute models of its own build or of the build before); `remove` names model
    directories of the last build that this build no longer owns.
    """

    def __init__(self, repo: Path, order: Sequence[str], remove: Iterable[str] = (), lock: RepositoryLock | None = None) -> None:
        self.repo = check_root(repo)
        self.held = lock  # the build's own lock, already held: this publication takes no other
        self.order = list(order)
        self.remove = sorted(set(remove) - set(order))
        self.area: Path | None = None
        self.txn: Path | None = None
        self._lock: IO[str] | None = None
        self.committed = False
        self.kept_mounts: list[Path] = []

    # ---- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> Publication:
        try:
            if not self.repo.exists():
                self.repo.mkdir(parents=True)
            self.area = work_area(self.repo)
            self.area.mkdir(exist_ok=True)
            if self.held is None or not self.held.held:
                self._lock = open(self.area / "lock", "w")
        except OSError as e:
            raise RepositoryError(f"cannot write {self.repo}: {e}") from None
        if self._lock is not None:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock.close()
                self._lock = None
                raise RepositoryError(f"another build is writing {self.repo} (lock {self.area / 'lock'})") from None
        recover(self.area, self.repo)
        self.txn = Path(tempfile.mkdtemp(prefix="txn-", dir=self.area))
        (self.txn / "new").mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed and self.txn is not None:
            remove_tree(self.txn)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # ---- staging ------------------------------------------------------------------------------------
    def stage(self, model: str) -> Path:
        """An empty directory to write model `model` into (mode from the umask, as mkdir makes it)."""
        assert self.txn is not None, "use Publication as a context manager"
        if model not in self.order:
            raise ValueError(f"model {model!r} is not in this publication's order")
        path = self.txn / "new" / model
        path.mkdir()
        return path

    def staged(self, model: str) -> Path:
        assert self.txn is not None
        return self.txn / "new" / model

    def _inherit(self, staged: Path, live: Path) -> None:
        """The new directory keeps the mode and owner of the one it replaces."""
        info = os.lstat(live)
        os.chmod(staged, stat.S_IMODE(info.st_mode))
        if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            with contextlib.suppress(PermissionError):
                for root, dirs, files in os.walk(staged):
                    for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                        os.lchown(name, info.st_uid, info.st_gid)

    @staticmethod
    def _refuse_mounts(live: Path) -> None:
        mounts = mount_points(live)
        if mounts:
            raise RepositoryError(
                f"{mounts[0]} is a mount point inside {live}, a model directory this build replaces; "
                "mount it outside the build's model directories (the repository is unchanged)"
            )

    # ---- publishing ---------------------------------------------------------------------------------
    def commit(self) -> None:
        """Publish every staged directory in order, then drop the directories this build no longer owns."""
        assert self.txn is not None
        can_exchange = True
        steps: list[Step] = []
        for model in self.order:
            staged, live = self.staged(model), self.repo / model
            if not staged.is_dir():
                raise RepositoryError(f"model {model!r} was not staged")
            if live.is_symlink() or (live.exists() and not live.is_dir()):
                raise RepositoryError(f"{live} is not a directory the build wrote; move it away")
            if live.exists():
                self._refuse_mounts(live)
                self._inherit(staged, live)
                steps.append(Step(model, "exchange", os.lstat(staged).st_ino))
            else:
                steps.append(Step(model, "create", os.lstat(staged).st_ino))
        for model in self.remove:
            live = self.repo / model
            if live.is_dir() and not live.is_symlink():
                self._refuse_mounts(live)
                steps.append(Step(model, "remove", os.lstat(live).st_ino))
        (self.txn / "removed").mkdir()
        journal = {"repo": str(self.repo), "state": "publishing", "steps": [asdict(s) for s in steps]}
        _write_json(self.txn / JOURNAL, journal)
        try:
            self._apply(steps, journal, can_exchange)
        except BaseException:
            _undo(self.txn, self.repo, journal)  # the repository is the last build's again
            raise
        self.committed = True  # every step took place: the publication is done, recorded or not
        try:
            journal["state"] = "committed"
            _write_json(self.txn / JOURNAL, journal)
        except OSError:  # e.g. no space left for the record: recover() tells a complete publication by its inodes
            pass
        self.kept_mounts = remove_tree(self.txn)

    def _apply(self, steps: list[Step], journal: dict, can_exchange: bool) -> None:
        assert self.txn is not None
        for i, step in enumerate(steps):
            live, staged = self.repo / step.model, self.staged(step.model)
            if step.op == "exchange" and can_exchange:
                if exchange(staged, live):
                    continue
                can_exchange = False
            if step.op == "exchange":  # no RENAME_EXCHANGE here: move the old one out, then the new one in
                old = self.txn / "removed" / step.model
                journal["steps"][i : i + 1] = [
                    asdict(Step(step.model, "remove", os.lstat(live).st_ino)),
                    asdict(Step(step.model, "create", step.inode)),
                ]
                _write_json(self.txn / JOURNAL, journal)
                os.rename(live, old)
                os.rename(staged, live)
            elif step.op == "create":
                os.rename(staged, live)
            else:
                os.rename(live, self.txn / "removed" / step.model)


def _complete(txn: Path, repo: Path, journal: dict) -> bool:
    """Every step of the journal took place (only the commit record is missing)."""
    for step in (Step(**s) for s in journal["steps"]):
        if step.op in ("exchange", "create") and _inode(repo / step.model) != step.inode:
            return False
        if step.op == "remove" and (_inode(repo / step.model) is not None or _inode(txn / "removed" / step.model) != step.inode):
            return False
    return True


def _undo(txn: Path, repo: Path, journal: dict) -> None:
    """Roll back the steps of an interrupted publication that took place, last first."""
    for step in reversed([Step(**s) for s in journal["steps"]]):
        live, staged, removed = repo / step.model, txn / "new" / step.model, txn / "removed" / step.model
        if step.op == "exchange" and _inode(live) == step.inode:
            if not exchange(staged, live):
                raise RepositoryError(f"cannot undo the interrupted publication of {live}: no RENAME_EXCHANGE")
        elif step.op == "create" and _inode(live) == step.inode:
            os.rename(live, staged)
        elif step.op == "remove" and _inode(live) is None and _inode(removed) == step.inode:
            os.rename(removed, live)


def recover(area: Path, repo: Path) -> list[str]:
    """Finish what killed builds left in the work area (call with the lock held): an interrupted publication is
    rolled back, so the repository is the last complete build's again; staging and work files are removed.
    Returns what was done, one line per leftover."""
    done = []
    for txn in sorted(area.glob("txn-*")):
        journal = None
        with contextlib.suppress(OSError, ValueError):
            journal = json.loads((txn / JOURNAL).read_text())
        if journal is not None and journal.get("state") == "publishing" and journal.get("repo") == str(repo):
            if _complete(txn, repo, journal):
                done.append(f"{txn.name}: a publication whose commit record was not written had completed; kept")
            else:
                _undo(txn, repo, journal)
                done.append(f"{txn.name}: an interrupted publication was rolled back")
        else:
            done.append(f"{txn.name}: leftovers removed")
        remove_tree(txn)
    return done
