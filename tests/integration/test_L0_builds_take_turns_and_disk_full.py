"""Builds into one repository take turns from the moment they read its state, and a full disk is one line and
exit 2 with the repository unchanged."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, digits_spec_copy, tree_hashes

from tritonforge.repository.manifest import read_manifest
from tritonforge.repository.publish import RepositoryLock


def _build(*args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 - the child holds it
    return subprocess.Popen(
        [sys.executable, "-m", "tritonforge", "build", *args, "--no-serving-check"],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_two_concurrent_builds_of_two_edits_leave_one_consistent_repository(tmp_path, digits_spec, reliability):
    repo = tmp_path / "model_repository"
    a = digits_spec_copy(tmp_path / "a")
    b = digits_spec_copy(tmp_path / "b", serving={"instance_count": 2})
    first = _build(str(a), "--repo", str(repo))
    assert first.wait(300) == 0, first.stdout.read()
    # Hold the repository's lock so both builds are sure to meet it, then let them go.
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with RepositoryLock(repo):
        runs = [_build(str(spec), "--repo", str(repo), "--force", log=log) for spec, log in zip((a, b), logs, strict=True)]
        deadline = time.monotonic() + 240
        while not all("waiting for another build" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(r.poll() is None for r in runs), [x.read_text() for x in logs]
            time.sleep(0.5)
    for r, log in zip(runs, logs, strict=True):
        assert r.wait(300) == 0, log.read_text()
    manifest = read_manifest(repo, "digits")
    assert manifest.version == 3 and manifest.intact(repo)
    assert sorted(p.name for p in repo.iterdir()) == sorted(manifest.models)  # nothing left outside it
    for spec in (a, b):  # the next build of either succeeds
        again = _build(str(spec), "--repo", str(repo))
        assert again.wait(300) == 0, again.stdout.read()
    reliability(
        "concurrent builds",
        "two `build --force` of two edits of one spec into one repository at once",
        requests=2,
        failed=0,
        notes="the second waited for the first; versions 2 and 3; manifest intact",
    )


@contextlib.contextmanager
def _small_filesystem(path: Path, size_mb: int):
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_is_one_line_exit_2_and_leaves_the_repository(tmp_path, digits_spec, reliability):
    with _small_filesystem(tmp_path / "small", 16) as fs:
        repo = fs / "model_repository"
        spec = digits_spec_copy(tmp_path / "spec")
        first = _build(str(spec), "--repo", str(repo))
        assert first.wait(300) == 0, first.stdout.read()
        before = tree_hashes(repo)
        filler = fs / "filler"
        with open(filler, "wb") as f:  # every block but 64 KiB: less than one model directory's copy
            f.write(b"\0" * (shutil.disk_usage(fs).free - 64 * 1024))
        run = _build(str(spec), "--repo", str(repo), "--force")
        code, out = run.wait(300), run.stdout.read()
        lines = [line for line in out.splitlines() if line.strip()]
        assert code == 2, out
        assert "error: no space left on a device while building into" in lines[-1] and "Traceback" not in out
        filler.unlink()
        assert tree_hashes(repo) == before
        manifest = read_manifest(repo, "digits")
        assert manifest.version == 1 and manifest.intact(repo)
        assert not list((fs / ".model_repository.tritonforge").glob("txn-*"))
        reliability(
            "disk full",
            "a forced rebuild into a repository whose filesystem has 64 KiB free",
            requests=1,
            failed=0,
            notes=f"exit 2, one line: {json.dumps(lines[-1][:80])}; repository byte-identical",
        )
