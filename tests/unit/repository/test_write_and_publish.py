"""Repository writing: configs from model_config_pb2 that parse back, and atomic, all-or-nothing swaps."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from helpers import tree_hashes
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.errors import RepositoryError
from tritonforge.repository import config as cfg
from tritonforge.repository.layout import StagedFiles
from tritonforge.repository.publish import Publication, remove_tree, work_area
from tritonforge.spec import DynamicBatchingSpec, TensorSpec, WarmupSpec

IN = [TensorSpec(name="ids", dtype="int64", shape=[-1]), TensorSpec(name="text", dtype="string", shape=[1])]
OUT = [TensorSpec(name="emb", dtype="float32", shape=[384])]
SCHED = cfg.Scheduling(
    32,
    DynamicBatchingSpec(preferred_batch_sizes=[8, 32], max_queue_delay_us=100),
    2,
    "cpu",
    WarmupSpec(batch_sizes=[1, 8], dynamic_dim=16),
)


def test_python_model_config_round_trip(tmp_path):
    c = cfg.python_model("enc", IN, OUT, SCHED, {"onnx_file": "model.onnx"})
    cfg.write_config(c, tmp_path)
    back = cfg.read_config(tmp_path / "config.pbtxt")
    assert back == c
    assert back.backend == "python" and back.max_batch_size == 32
    assert list(back.dynamic_batching.preferred_batch_size) == [8, 32]
    assert back.instance_group[0].count == 2 and back.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert back.input[1].data_type == mc.TYPE_STRING
    assert [w.batch_size for w in back.model_warmup] == [1, 8]
    assert list(back.model_warmup[0].inputs["ids"].dims) == [16]  # -1 takes the warm-up dynamic dim
    assert back.parameters["onnx_file"].string_value == "model.onnx"


def test_tensorrt_config():
    t = cfg.tensorrt_model("m_trt", IN[:1], OUT, SCHED, {"9.0": "h100.plan", "8.0": "a100.plan"})
    assert t.platform == "tensorrt_plan" and dict(t.cc_model_filenames) == {"8.0": "a100.plan", "9.0": "h100.plan"}
    assert cfg.to_text(t).endswith("\n")


def test_read_config_error_names_file(tmp_path):
    (tmp_path / "config.pbtxt").write_text("name: 'x'\nbogus_field: 1\n")
    with pytest.raises(RepositoryError, match="config.pbtxt: not a valid Triton model config"):
        cfg.read_config(tmp_path / "config.pbtxt")


def _seed(repo):
    for name in ("a", "b"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(f"old {name}")
        (repo / name / "1" / "model.onnx").write_text(f"weights {name}")


def _stage(pub: Publication, name: str, text: str) -> None:
    d = pub.stage(name)
    (d / "2").mkdir()
    (d / "config.pbtxt").write_text(text)
    (d / "2" / "model.onnx").write_text(text)


def _leftovers(repo: Path) -> list[Path]:
    return list(work_area(repo).glob("txn-*"))


def test_staged_files_copy_a_source_once_and_never_touch_it(tmp_path):
    """A live file a build reuses keeps its inode, link count and ctime (Triton's poll reads ctime); the copies of one
    source inside the staging share one inode."""
    live = tmp_path / "live" / "model.onnx"
    live.parent.mkdir()
    live.write_bytes(b"weights")
    before = os.lstat(live)
    staged = StagedFiles()
    a, b = tmp_path / "stage" / "m" / "1" / "model.onnx", tmp_path / "stage" / "m_ort" / "1" / "model.onnx"
    staged.place(live, a)
    staged.place(live, b)
    after = os.lstat(live)
    assert (after.st_ino, after.st_nlink, after.st_ctime_ns) == (before.st_ino, before.st_nlink, before.st_ctime_ns)
    assert a.read_bytes() == b.read_bytes() == b"weights"
    assert os.lstat(a).st_ino == os.lstat(b).st_ino != before.st_ino
    other = tmp_path / "stage" / "n" / "1" / "model.onnx"
    StagedFiles().place(live, other)  # another build's staging: its own copy
    assert os.lstat(other).st_ino not in (before.st_ino, os.lstat(a).st_ino)


def test_publication_replaces_only_its_models_and_never_the_root(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    root, inode_b = os.stat(repo).st_ino, os.stat(repo / "b" / "config.pbtxt").st_ino
    os.chmod(repo, 0o751)
    with Publication(repo, order=["a", "c"]) as pub:
        _stage(pub, "a", "new a")
        _stage(pub, "c", "new c")
        pub.commit()
    assert (repo / "a" / "config.pbtxt").read_text() == "new a" and not (repo / "a" / "1").exists()
    assert (repo / "c" / "2" / "model.onnx").read_text() == "new c"
    assert os.stat(repo).st_ino == root and stat.S_IMODE(os.stat(repo).st_mode) == 0o751  # the root itself
    assert os.stat(repo / "b" / "config.pbtxt").st_ino == inode_b  # not the build's: never touched
    assert stat.S_IMODE(os.stat(repo / "c").st_mode) == 0o777 & ~_umask()  # mkdir's mode, not mkdtemp's 0700
    assert not _leftovers(repo) and sorted(p.name for p in tmp_path.iterdir()) == [".repo.tritonforge", "repo"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_replaced_model_directory_keeps_its_mode(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    os.chmod(repo / "a", 0o750)
    with Publication(repo, order=["a"]) as pub:
        _stage(pub, "a", "new a")
        pub.commit()
    assert stat.S_IMODE(os.stat(repo / "a").st_mode) == 0o750


def test_models_the_build_no_longer_owns_are_removed_and_only_those(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    with Publication(repo, order=["a"], remove={"b", "never_there"}) as pub:
        _stage(pub, "a", "new a")
        pub.commit()
    assert sorted(p.name for p in repo.iterdir()) == ["a"]


def test_failure_before_commit_leaves_repo_untouched(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    before = tree_hashes(repo)
    with pytest.raises(RuntimeError), Publication(repo, order=["a"]) as pub:
        _stage(pub, "a", "half")
        raise RuntimeError("build failed half way")
    assert tree_hashes(repo) == before and not _leftovers(repo)


def test_second_writer_is_refused(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    with (
        Publication(repo, order=["a"]),
        pytest.raises(RepositoryError, match="another build is writing"),
        Publication(repo, order=["a"]),
    ):
        pass


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_repo_that_is_a_file_or_a_symlink_is_refused_and_left_alone(tmp_path, kind):
    target = tmp_path / "real"
    target.mkdir()
    repo = tmp_path / "repo"
    if kind == "file":
        repo.write_text("not a repository")
    else:
        repo.symlink_to(target)
    with pytest.raises(RepositoryError, match="is a file" if kind == "file" else "is a symbolic link"):
        Publication(repo, order=["a"]).__enter__()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real", "repo"]
    assert repo.is_symlink() if kind == "symlink" else repo.read_text() == "not a repository"


def test_remove_tree_never_follows_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    doomed = tmp_path / "doomed"
    (doomed / "sub").mkdir(parents=True)
    (doomed / "sub" / "link").symlink_to(outside)
    (doomed / "file").write_text("x")
    assert remove_tree(doomed) == []
    assert not doomed.exists() and (outside / "keep.txt").read_text() == "keep"


def test_a_commit_record_that_cannot_be_written_leaves_a_complete_publication(tmp_path, monkeypatch):
    """Disk full after every exchange, while writing the journal's commit record: the publication happened, so
    the build must not report failure, and the next build keeps it instead of rolling it back."""
    import errno

    from tritonforge.repository import publish

    repo = tmp_path / "repo"
    _seed(repo)
    real = publish._write_json

    def full_at_commit(path, data):
        if data.get("state") == "committed":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(publish, "_write_json", full_at_commit)
    with Publication(repo, order=["a", "c"]) as pub:
        _stage(pub, "a", "new a")
        _stage(pub, "c", "new c")
        pub.commit()
    assert pub.committed and (repo / "a" / "config.pbtxt").read_text() == "new a"


def test_recovery_keeps_a_complete_publication_and_rolls_back_a_partial_one(tmp_path, monkeypatch):
    from tritonforge.repository import publish

    repo = tmp_path / "repo"
    _seed(repo)
    before = tree_hashes(repo)
    real_apply = Publication._apply

    def stop_after(n):
        def apply(self, steps, journal, can_exchange):
            real_apply(self, steps[:n], journal, can_exchange)
            raise KeyboardInterrupt  # killed here; its own rollback is skipped below, as after a kill -9

        return apply

    monkeypatch.setattr(publish, "_undo", lambda *a: None)
    monkeypatch.setattr(Publication, "_apply", stop_after(1))
    monkeypatch.setattr(publish, "remove_tree", lambda p: [])  # a killed build cleans nothing up
    with pytest.raises(KeyboardInterrupt), Publication(repo, order=["a", "c"]) as pub:
        _stage(pub, "a", "new a")
        _stage(pub, "c", "new c")
        pub.commit()
    monkeypatch.undo()
    assert (repo / "a" / "config.pbtxt").read_text() == "new a"  # half published
    publish.recover(work_area(repo), repo)
    assert tree_hashes(repo) == before  # rolled back: c was never created

    monkeypatch.setattr(publish, "_undo", lambda *a: None)
    monkeypatch.setattr(Publication, "_apply", stop_after(2))
    monkeypatch.setattr(publish, "remove_tree", lambda p: [])
    with pytest.raises(KeyboardInterrupt), Publication(repo, order=["a", "c"]) as pub:
        _stage(pub, "a", "new a")
        _stage(pub, "c", "new c")
        pub.commit()
    monkeypatch.undo()
    done = publish.recover(work_area(repo), repo)
    assert "had completed; kept" in done[0]
    assert (repo / "a" / "config.pbtxt").read_text() == "new a" and (repo / "c" / "config.pbtxt").read_text() == "new c"


def test_a_failure_in_the_middle_of_a_commit_rolls_the_repository_back(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    _seed(repo)
    before = tree_hashes(repo)
    real_rename = os.rename

    def rename(src, dst):
        if str(dst).endswith("/c"):
            raise OSError(28, "No space left on device", str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError), Publication(repo, order=["a", "c"]) as pub:
        _stage(pub, "a", "new a")
        _stage(pub, "c", "new c")
        pub.commit()
    monkeypatch.undo()
    assert tree_hashes(repo) == before and not _leftovers(repo)


def test_builds_of_one_repository_take_turns_and_a_waiting_one_says_so(tmp_path):
    import threading
    import time

    from tritonforge.repository.publish import RepositoryLock

    repo, said, order = tmp_path / "repo", [], []
    first = RepositoryLock(repo).__enter__()

    def second():
        with RepositoryLock(repo, on_wait=said.append, poll_s=0.01):
            order.append("second")

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.2)
    order.append("first")
    first.__exit__(None, None, None)
    t.join(5)
    assert order == ["first", "second"] and len(said) == 1 and "waiting for another build" in said[0]
    with RepositoryLock(repo), pytest.raises(RepositoryError, match="for over 0s"), RepositoryLock(repo, wait_s=0.0):
        pass


def test_the_work_area_says_what_it_is_once(tmp_path):
    """The work area stays beside the repository (a rename swaps model directories in, within one filesystem);
    the first build says so, and a README.txt in it says so for good."""
    from tritonforge.repository.publish import WORK_AREA_README, RepositoryLock

    repo = tmp_path / "repo"
    with RepositoryLock(repo) as first:
        assert first.announced and first.area == tmp_path / ".repo.tritonforge"
    readme = (tmp_path / ".repo.tritonforge" / WORK_AREA_README).read_text()
    assert f"builds of {repo}" in readme and "rename within one filesystem" in readme and "no build runs" in readme
    with RepositoryLock(repo) as second:
        assert not second.announced
