"""A repository rebuilt while a real tritonserver serves it: reloads (explicit control) and polling lose no
request, a model loaded half way through a publication sees one build's files, and mounts inside or of the
repository survive (root only: private mount namespaces)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import DIGITS, ROOT, digits_spec_copy, scaled

from tritonforge.builder.pipeline import build
from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.client import Client
from tritonforge.repository.publish import Publication
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer
from tritonforge.server.reload import reload_build
from tritonforge.testing.load import SteadyLoad

pytestmark = pytest.mark.integration

SERVING = {"dynamic_batching": {"max_queue_delay_us": 200}, "warmup": {"batch_sizes": [1]}}


def _images() -> list[dict[str, np.ndarray]]:
    images = np.load(DIGITS / "artifacts" / "validation.npz")["image"]
    return [{"image": images[i : i + 1]} for i in range(len(images))]


def _specs(tmp: Path) -> tuple[Path, Path]:
    """Build A (FP32) and build B of the same model, whose in-process runner serves FP16: answers tell them apart."""
    a = digits_spec_copy(tmp / "a", serving=SERVING)
    b = digits_spec_copy(
        tmp / "b",
        variants=[{"kind": "onnx_fp16"}],
        serving=SERVING | {"router": {"cpu_variant": "onnx_fp16"}, "instance_count": 2},
    )
    return a, b


def _direct(repo: Path, inputs) -> np.ndarray:
    runner = OrtModel(Repository(repo).file(Repository(repo).runner("digits")), ["logits"])
    return np.concatenate([runner.run(x)["logits"] for x in inputs])


def _which_build(record, old: np.ndarray, new: np.ndarray) -> list[str]:
    """'old', 'new' or 'neither' for every answer."""
    out = []
    for a in record.answers:
        got = a.outputs["logits"][0]
        if np.allclose(got, new[a.index], atol=1e-5):
            out.append("new")
        elif np.allclose(got, old[a.index], atol=1e-5):
            out.append("old")
        else:
            out.append("neither")
    return out


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonforge", *args], cwd=ROOT, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory, digits_spec):
    tmp = tmp_path_factory.mktemp("rebuild")
    a, b = _specs(tmp)
    inputs = _images()
    repo_b = tmp / "b_only"
    build(b, repo_b)
    return a, b, inputs, _direct(repo_b, inputs)


def test_rebuild_and_reload_under_load_fails_no_request(tmp_path, two_builds, reliability):
    a, b, inputs, new = two_builds
    repo = tmp_path / "repo"
    build(a, repo)
    old = _direct(repo, inputs)
    assert not np.allclose(old, new, atol=1e-5)
    with LocalTritonServer(repo) as server, Client(server.grpc_url, timeout=30) as client:
        with SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=4) as load:
            load.wait_for(100)
            proc = _cli("build", str(b), "--repo", str(repo))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            result = reload_build(server.grpc_url, repo, "digits")
            reloaded_at = time.monotonic()
            assert "digits" in result.loaded and "digits" not in result.failed
            load.wait_for(load.record.requests + scaled(200))
        record = load.record
    builds = _which_build(record, old, new)
    reliability(
        "rebuild + reload under load",
        "4 threads on digits; `tritonforge build` of a changed spec, then reload (explicit model control)",
        record.requests,
        len(record.errors),
        builds.count("neither"),
        f"{builds.count('old')} answers from the old build, {builds.count('new')} from the new",
    )
    assert record.errors == [] and "neither" not in builds
    after = [w for w, ans in zip(builds, record.answers, strict=True) if ans.sent_at > reloaded_at]
    assert after and set(after) == {"new"}, "after the reload the server serves the new build"
    assert "old" in builds


def test_rebuild_under_a_polling_server_fails_no_request(tmp_path, two_builds, reliability):
    a, b, inputs, new = two_builds
    repo = tmp_path / "repo"
    build(a, repo)
    old = _direct(repo, inputs)
    log = tmp_path / "tritonserver.log"
    with (
        LocalTritonServer(repo, model_control="poll", poll_seconds=1, log_path=log) as server,
        Client(server.grpc_url, timeout=30) as client,
    ):
        with SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=4) as load:
            load.wait_for(100)
            proc = _cli("build", str(b), "--repo", str(repo))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            built_at = time.monotonic()
            deadline = built_at + 180  # the new models load beside the old ones while both serve: slow on a busy machine
            while time.monotonic() < deadline:
                n = len(load.record.answers)
                if n and _which_build(load.record, old, new)[-1] == "new":
                    break
                time.sleep(0.5)
            switched_after = time.monotonic() - built_at
            load.wait_for(load.record.requests + scaled(200))
        record = load.record
    builds = _which_build(record, old, new)
    reliability(
        "rebuild under a polling server",
        "4 threads on digits; `tritonforge build` of a changed spec into a server in poll mode (1 s)",
        record.requests,
        len(record.errors),
        builds.count("neither"),
        f"{builds.count('old')} answers from the old build, {builds.count('new')} from the new",
    )
    assert record.errors == [] and "neither" not in builds
    loads = [line for line in log.read_text(errors="replace").splitlines() if "digits" in line or "rror" in line]
    assert builds[-50:] == ["new"] * 50, (
        f"the polling server picked the new build up ({switched_after:.0f} s after the build):\n" + "\n".join(loads[-30:])
    )


def _entries(repo: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and directory below `repo`: inode, mtime and ctime (what Triton's poll compares)."""
    out = {}
    for p in repo.rglob("*"):
        s = p.lstat()
        out[str(p.relative_to(repo))] = (s.st_ino, s.st_mtime_ns, s.st_ctime_ns)
    return out


def test_a_rebuild_changes_no_timestamp_a_polling_server_reads(tmp_path, two_builds, monkeypatch, reliability):
    """Triton's poll takes max(mtime, ctime) of every entry of a model directory as its modification time, and a
    hard link made or removed changes a file's ctime. Before its publication a build leaves the live files alone
    (it reuses the last build's files by copying them), and after it nothing changes the files it published (its
    work files are not links to them): a polling server reloads a model only when its directory is exchanged, not
    while a publication replaces it (CI once saw `digits` version 1 reloaded half way and left failed)."""
    a, b, _inputs, _new = two_builds
    repo = tmp_path / "repo"
    build(a, repo)
    built = _entries(repo)
    seen: dict[str, dict] = {}
    real = Publication.commit

    def commit(self: Publication) -> None:
        seen["live"] = _entries(self.repo)
        real(self)
        seen["published"] = _entries(self.repo)

    monkeypatch.setattr(Publication, "commit", commit)
    build(b, repo)
    after = _entries(repo)
    old_touched = sorted(k for k, v in built.items() if seen["live"].get(k) != v)
    new_touched = sorted(k for k, v in seen["published"].items() if after.get(k) != v)
    reliability(
        "timestamps a polling server reads",
        "a build reusing the last build's files; every live entry's inode, mtime and ctime compared",
        0,
        0,
        len(old_touched) + len(new_touched),
        f"{len(built)} live entries before the publication, {len(after)} after: none changed",
    )
    assert seen["published"] != built, "the test's second build published something"
    assert old_touched == [], f"the build changed live entries before publishing: {old_touched}"
    assert new_touched == [], f"entries changed after the publication: {new_touched}"


# The build pauses after its first model directory is exchanged; the test reloads every model meanwhile.
_PAUSED_PUBLICATION = """
import os, pathlib, sys, time
from tritonforge.repository import publish
marker, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
real, calls = publish.exchange, []
def exchange(a, b):
    done = real(a, b)
    calls.append(b)
    if len(calls) == 1:
        marker.write_text(str(b))
        while not go.exists():
            time.sleep(0.05)
    return done
publish.exchange = exchange
sys.argv = ["tritonforge"] + sys.argv[3:]
from tritonforge.cli.main import main
main()
"""


def test_models_reloaded_half_way_through_a_publication_serve_one_build_each(tmp_path, two_builds, reliability):
    a, b, inputs, new = two_builds
    repo = tmp_path / "repo"
    build(a, repo)
    old = _direct(repo, inputs)
    marker, go = tmp_path / "exchanged", tmp_path / "go"
    with LocalTritonServer(repo) as server, Client(server.grpc_url, timeout=30) as client:
        with SteadyLoad(lambda x: client.infer("digits", x), inputs, threads=4) as load:
            load.wait_for(50)
            proc = subprocess.Popen(
                [sys.executable, "-c", _PAUSED_PUBLICATION, str(marker), str(go), "build", str(b), "--repo", str(repo)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            deadline = time.monotonic() + 300
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert marker.exists(), proc.communicate()[0]
            half = reload_build(server.grpc_url, repo, "digits")  # one directory new, the others old
            assert "digits" in half.loaded
            load.wait_for(load.record.requests + 100)
            go.write_text("")
            assert proc.wait(300) == 0, proc.stdout.read()
            assert "digits" in reload_build(server.grpc_url, repo, "digits").loaded
            load.wait_for(load.record.requests + scaled(100))
        record = load.record
    builds = _which_build(record, old, new)
    reliability(
        "reload half way through a publication",
        "4 threads on digits; every model reloaded while the "
        "build had exchanged one model directory of three, then again after it",
        record.requests,
        len(record.errors),
        builds.count("neither"),
        "every answer is one build's, whole",
    )
    assert record.errors == [] and "neither" not in builds


# ---- mounts (root: a private mount namespace, so nothing outside the test sees them) -------------------
_MOUNTS = """
set -e
repo="$1"; vol="$2"; view="$3"; spec_a="$4"; spec_b="$5"; out="$6"
mkdir -p "$repo/shared" "$vol" "$view"
printf 'operator data\\n' > "$vol/keep.txt"; mkdir "$vol/sub"; printf 'more\\n' > "$vol/sub/also.txt"
mount --bind "$vol" "$repo/shared"
"$PY" -m tritonforge build "$spec_a" --repo "$repo" > "$out/build_a.log" 2>&1
mount --bind "$repo" "$view"
"$PY" -m tritonforge build "$spec_b" --repo "$repo" > "$out/build_b.log" 2>&1
ls "$repo/shared" > "$out/shared_after.txt"
cat "$view/digits/tritonforge_manifest.json" > "$out/view_manifest.json"
mountpoint -q "$repo/shared" && echo mounted > "$out/still_mounted.txt"
"""


@pytest.fixture(scope="module")
def mount_scenario(tmp_path_factory, two_builds):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("skipped: needs root and unshare(1) for a private mount namespace (CI runs as root)")
    a, b, _inputs, _new = two_builds
    tmp = tmp_path_factory.mktemp("mounts")
    repo, vol, view, out = tmp / "repo", tmp / "vol", tmp / "view", tmp / "out"
    out.mkdir()
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            _MOUNTS,
            "mounts",
            str(repo),
            str(vol),
            str(view),
            str(a),
            str(b),
            str(out),
        ],
        env={**os.environ, "PY": sys.executable},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    logs = "".join(p.read_text() for p in sorted(out.glob("*.log")))
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    return vol, out


def test_a_bind_mount_inside_the_repository_survives_a_rebuild(mount_scenario, reliability):
    vol, out = mount_scenario
    kept = sorted(p.name for p in vol.rglob("*"))
    reliability(
        "bind mount inside the repository",
        "a volume bind-mounted at REPO/shared, then two builds",
        0,
        0,
        int(kept != ["also.txt", "keep.txt", "sub"]),
        f"the volume after both builds: {', '.join(kept)}",
    )
    assert (vol / "keep.txt").read_text() == "operator data\n" and (vol / "sub" / "also.txt").read_text() == "more\n"
    assert (out / "shared_after.txt").read_text().split() == ["keep.txt", "sub"]
    assert (out / "still_mounted.txt").read_text().strip() == "mounted"


def test_a_bind_mount_of_the_repository_sees_the_new_build(mount_scenario, reliability):
    _vol, out = mount_scenario
    manifest = json.loads((out / "view_manifest.json").read_text())
    reliability(
        "bind mount of the repository",
        "the repository bind-mounted elsewhere (as a container sees it), then rebuilt",
        0,
        0,
        int(manifest["version"] != 2),
        f"the mount reads build {manifest['version']}",
    )
    assert manifest["version"] == 2 and "digits_onnx_fp16" in manifest["roles"]


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_repo_given_as_a_file_or_a_symlink_exits_2(tmp_path, digits_spec, kind, reliability):
    target = tmp_path / "elsewhere"
    target.mkdir()
    repo = tmp_path / "repo"
    repo.write_text("x") if kind == "file" else repo.symlink_to(target)
    proc = _cli("build", str(digits_spec_copy(tmp_path / "spec")), "--repo", str(repo))
    untouched = sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "repo", "spec"] and not list(target.iterdir())
    reliability(
        f"--repo at a {kind}",
        f"`tritonforge build --repo` naming a {kind}",
        0,
        0,
        int(proc.returncode != 2 or not untouched),
        f"exit {proc.returncode}, nothing renamed or written",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("is a file" if kind == "file" else "is a symbolic link") in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "repo", "spec"] and not list(target.iterdir())


def test_the_readme_deploy_flow_reload_command(tmp_path, two_builds):
    """`tritonforge reload` after `tritonforge build`, as the README's deploy steps say."""
    a, b, _inputs, _new = two_builds
    repo = tmp_path / "repo"
    build(a, repo)
    with LocalTritonServer(repo) as server:
        assert _cli("build", str(b), "--repo", str(repo)).returncode == 0
        proc = _cli("reload", "digits", "--url", server.grpc_url, "--repo", str(repo))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "digits: loaded" in proc.stdout and "digits_onnx_fp16" in proc.stdout
        states = {s.name: s.state for s in server.model_states()}
        assert states["digits"] == "READY"
