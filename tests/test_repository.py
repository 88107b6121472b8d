"""Repository writing: configs from model_config_pb2 that parse back, and atomic, all-or-nothing swaps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.errors import RepositoryError
from tritonforge.repository import config as cfg
from tritonforge.repository.transaction import RepositoryTransaction
from tritonforge.build.spec import DynamicBatchingSpec, TensorSpec, WarmupSpec

from conftest import ROOT, tree_hashes

IN = [TensorSpec(name="ids", dtype="int64", shape=[-1]), TensorSpec(name="text", dtype="string", shape=[1])]
OUT = [TensorSpec(name="emb", dtype="float32", shape=[384])]
SCHED = cfg.Scheduling(32, DynamicBatchingSpec(preferred_batch_sizes=[8, 32], max_queue_delay_us=100), 2, "cpu",
                       WarmupSpec(batch_sizes=[1, 8], dynamic_dim=16))


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


def test_ensemble_and_tensorrt_configs():
    e = cfg.ensemble_model("m", IN, OUT, 32, [cfg.EnsembleStep("m_ort", {"ids": "ids", "text": "text"}, {"emb": "emb"})],
                           response_cache=True)
    assert e.platform == "ensemble" and e.response_cache.enable
    assert not e.HasField("dynamic_batching") and not e.instance_group and not e.model_warmup
    step = e.ensemble_scheduling.step[0]
    assert step.model_name == "m_ort" and step.model_version == -1 and dict(step.output_map) == {"emb": "emb"}
    t = cfg.tensorrt_model("m_trt", IN[:1], OUT, SCHED, {"9.0": "h100.plan", "8.0": "a100.plan"})
    assert t.platform == "tensorrt_plan" and dict(t.cc_model_filenames) == {"8.0": "a100.plan", "9.0": "h100.plan"}
    assert cfg.to_text(t).endswith("\n")


def test_read_config_error_names_file(tmp_path):
    (tmp_path / "config.pbtxt").write_text("name: 'x'\nbogus_field: 1\n")
    with pytest.raises(RepositoryError, match="config.pbtxt: not a valid Triton model config"):
        cfg.read_config(tmp_path / "config.pbtxt")


def _seed(repo):
    (repo / "a" / "1").mkdir(parents=True)
    (repo / "a" / "config.pbtxt").write_text("old a")
    (repo / "b" / "1").mkdir(parents=True)
    (repo / "b" / "config.pbtxt").write_text("old b")


def test_commit_replaces_only_named_models(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    inode_b = os.stat(repo / "b" / "config.pbtxt").st_ino
    with RepositoryTransaction(repo, replace={"a"}) as txn:
        assert not (txn.path / "a").exists() and (txn.path / "b" / "config.pbtxt").read_text() == "old b"
        (txn.path / "a").mkdir()
        (txn.path / "a" / "config.pbtxt").write_text("new a")
        txn.commit()
    assert (repo / "a" / "config.pbtxt").read_text() == "new a"
    assert os.stat(repo / "b" / "config.pbtxt").st_ino == inode_b  # carried over by hard link, not rewritten
    assert not list(tmp_path.glob(".repo.staging-*")) and not list(tmp_path.glob(".repo.old-*"))


def test_failure_before_commit_leaves_repo_untouched(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    before = tree_hashes(repo)
    with pytest.raises(RuntimeError):
        with RepositoryTransaction(repo, replace={"a"}) as txn:
            (txn.path / "a").mkdir()
            raise RuntimeError("build failed half way")
    assert tree_hashes(repo) == before
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_second_writer_is_refused(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    with RepositoryTransaction(repo):
        with pytest.raises(RepositoryError, match="another build is writing"):
            with RepositoryTransaction(repo):
                pass


def test_killed_writer_leaves_repo_intact_and_next_build_cleans_up(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    before = tree_hashes(repo)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from tritonforge.repository.transaction import RepositoryTransaction
        txn = RepositoryTransaction(Path({str(repo)!r}), replace={{"a"}}).__enter__()
        (txn.path / "a").mkdir()
        (txn.path / "a" / "config.pbtxt").write_text("half written")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -9
    assert tree_hashes(repo) == before
    assert list(tmp_path.glob(".repo.staging-*"))  # the killed build's leftovers ...
    with RepositoryTransaction(repo) as txn:
        txn.commit()
    assert not list(tmp_path.glob(".repo.staging-*"))  # ... are removed by the next build
    assert tree_hashes(repo) == before


def test_recovers_repository_caught_between_fallback_renames(tmp_path):
    repo = tmp_path / "repo"
    _seed(repo)
    before = tree_hashes(repo)
    os.rename(repo, tmp_path / ".repo.old-abc")  # as if killed between the two renames of the fallback path
    with RepositoryTransaction(repo) as txn:
        txn.commit()
    assert tree_hashes(repo) == before
