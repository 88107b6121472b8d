"""A publication killed with SIGKILL at its worst moments is undone by the next build."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT, tree_hashes

from tritonforge.repository.publish import Publication, work_area


def _seed(repo):
    for name in ("a", "b"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(f"old {name}")
        (repo / name / "1" / "model.onnx").write_text(f"weights {name}")


def _leftovers(repo):
    return list(work_area(repo).glob("txn-*"))


_KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tritonforge.repository import publish
    repo, when = Path(sys.argv[1]), sys.argv[2]
    calls = []
    real_exchange = publish.exchange
    def exchange(a, b):
        if os.environ.get("NO_EXCHANGE"):
            return False
        calls.append(1)
        if when == "after_first_exchange" and len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_exchange(a, b)
    publish.exchange = exchange
    real_rename = os.rename
    def rename(a, b):
        real_rename(a, b)
        if when == "between_renames" and Path(b).name == "a" and Path(b).parent.name == "removed":
            os.kill(os.getpid(), signal.SIGKILL)
    os.rename = rename
    pub = publish.Publication(repo, order=["a", "b"]).__enter__()
    for name in ("a", "b"):
        d = pub.stage(name)
        (d / "2").mkdir()
        (d / "config.pbtxt").write_text("new " + name)
    if when == "before_commit":
        os.kill(os.getpid(), signal.SIGKILL)
    pub.commit()
""")


@pytest.mark.parametrize("when", ["before_commit", "after_first_exchange", "between_renames"])
def test_killed_publication_is_undone_by_the_next_build(tmp_path, when, reliability):
    """kill -9 before the swap, between two model exchanges, or (without RENAME_EXCHANGE) between the two
    renames of one model: the next publication finds the journal and puts the last complete build back."""
    repo = tmp_path / "repo"
    _seed(repo)
    before = tree_hashes(repo)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"NO_EXCHANGE": "1"} if when == "between_renames" else {})}
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(repo), when], env=env)
    assert proc.returncode == -9
    assert _leftovers(repo)
    if when == "after_first_exchange":
        assert (repo / "a" / "config.pbtxt").read_text() == "new a"  # caught half published ...
    with Publication(repo, order=["a"]):
        pass  # ... until the next build starts
    restored = tree_hashes(repo) == before
    reliability(
        f"publication killed ({when.replace('_', ' ')})",
        "kill -9 of the publishing process, then the next build",
        0,
        0,
        int(not restored),
        "the previous build back, byte for byte, work area swept" if restored and not _leftovers(repo) else "NOT restored",
    )
    assert restored and not _leftovers(repo)
