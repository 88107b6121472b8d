"""The deployment files pass real linters (hadolint for the Dockerfiles, yamllint for compose and Kubernetes), and
the serving image's entrypoint drains before it stops (run here with a stand-in tritonserver); a built
repository's ONNX files load in the serving image's ONNX Runtime."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from tritonforge.server import probe

DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"skipped: {name} is not installed (pip install -e '.[dev]')")
    return str(path)


@pytest.mark.parametrize("dockerfile", ["Dockerfile.serve", "Dockerfile.builder"])
def test_dockerfiles_pass_hadolint(dockerfile):
    proc = subprocess.run([_tool("hadolint"), "--no-color", str(DOCKER / dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_and_manifests_pass_yamllint():
    config = "{extends: relaxed, rules: {line-length: {max: 240}}}"
    files = [DOCKER / "compose.yaml", DOCKER / "prometheus.yml", *sorted((DOCKER / "k8s").glob("*.yaml"))]
    files += sorted((DOCKER / "kserve").glob("*.yaml"))
    proc = subprocess.run([_tool("yamllint"), "-s", "-d", config, *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


_FAKE_TRITONSERVER = """#!/bin/sh
echo "$@" > "$OUT/args"
trap 'date +%s.%N > "$OUT/term"; exit 3' TERM
touch "$OUT/started"
while :; do sleep 0.05; done
"""


def test_the_serving_entrypoint_drains_then_stops_triton_and_exits_with_its_status(tmp_path):
    """SIGTERM to the entrypoint: the drain file at once (readiness fails), tritonserver still running for
    $TRITONFORGE_DRAIN_SECONDS, then SIGTERM to it, and the container exits with tritonserver's own status."""
    bin_dir, out, drain = tmp_path / "bin", tmp_path / "out", tmp_path / "draining"
    bin_dir.mkdir()
    out.mkdir()
    fake = bin_dir / "tritonserver"
    fake.write_text(_FAKE_TRITONSERVER)
    fake.chmod(0o755)
    drain.touch()  # left from a previous container: removed at start
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "OUT": str(out),
        "TRITONFORGE_DRAIN_FILE": str(drain),
        "TRITONFORGE_DRAIN_SECONDS": "1.5",
    }
    proc = subprocess.Popen(
        [str(DOCKER / "serve-entrypoint.sh"), "--model-repository=/models", "--exit-timeout-secs=30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (out / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (out / "started").exists() and not drain.exists()
        assert (out / "args").read_text().split() == ["--model-repository=/models", "--exit-timeout-secs=30"]
        proc.send_signal(signal.SIGTERM)
        sent = time.time()
        deadline = time.monotonic() + 5
        while not drain.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        marked = time.time() - sent
        assert drain.exists() and marked < 1.0
        assert probe.check(tmp_path, "http://127.0.0.1:9", drain_file=drain)[0].startswith("draining")
        assert not (out / "term").exists()  # still serving while the load balancers let go
        code = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    waited = float((out / "term").read_text()) - sent
    assert 1.4 <= waited < 4.0, waited
    assert code == 3, proc.stderr.read()  # tritonserver's status, not the shell's


def test_published_onnx_files_load_in_the_containers_onnx_runtime(digits_repo):
    """ONNX Runtime 1.19 (Triton 24.10) reads IR <= 10 and ai.onnx opsets <= 21."""
    import onnx

    paths = list(digits_repo.glob("*/*/*.onnx"))
    assert paths
    for path in paths:
        model = onnx.load(str(path), load_external_data=False)
        assert model.ir_version <= 10, path
        opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        assert opsets["ai.onnx"] <= 21, path
        used = {n.domain or "ai.onnx" for n in model.graph.node} | {"ai.onnx"}
        assert set(opsets) <= used, f"{path}: unused opset imports {set(opsets) - used}"


def _entrypoint_args(tmp_path: Path, args: list[str]) -> list[str]:
    """The arguments the serving entrypoint passes tritonserver (a stand-in that records them)."""
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    fake = bin_dir / "tritonserver"
    fake.write_text('#!/bin/sh\necho "$@" > "$OUT/args"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out)}
    subprocess.run([str(DOCKER / "serve-entrypoint.sh"), *args], env=env, check=True, timeout=10, capture_output=True)
    return (out / "args").read_text().split()


def test_the_serving_entrypoint_sizes_tritons_cache_as_the_builds_ask(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from tritonforge.repository.files import TRITON_CACHE_BYTES

    repo = tmp_path / "models"
    for name, size in (("a", "8388608"), ("b", "16777216"), ("c", None)):
        config = mc.ModelConfig(name=name, backend="python")
        config.parameters["tritonforge"].string_value = "{}"
        if size:
            config.response_cache.enable = True
            config.parameters[TRITON_CACHE_BYTES].string_value = size
        (repo / name).mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    base = [f"--model-repository={repo}", "--exit-timeout-secs=30"]
    assert _entrypoint_args(tmp_path, base) == [*base, "--cache-config=local,size=16777216"]  # the largest asked
    own = [*base, "--cache-config=local,size=1024"]
    assert _entrypoint_args(tmp_path, own) == own  # the arguments' own cache wins
    (repo / "b" / "config.pbtxt").unlink()
    (repo / "a" / "config.pbtxt").unlink()
    assert _entrypoint_args(tmp_path, base) == base  # nothing asks: no cache
