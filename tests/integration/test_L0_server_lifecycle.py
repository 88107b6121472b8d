"""The local tritonserver's life: it never outlives its parent, releases ports and processes on signals,
survives a broken model, and reports clearly when it cannot start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from tritonforge.client import Client
from tritonforge.errors import ServerError
from tritonforge.server.process import LocalTritonServer, free_ports

pytestmark = pytest.mark.integration


def processes_mentioning(marker: str) -> list[int]:
    """PIDs whose command line contains `marker` (tritonserver and its Python-backend stubs name the repo)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_until(predicate, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


@pytest.fixture
def private_repo(tmp_path, digits_repo) -> Path:
    """A copy of the digits repository under a unique path, so its processes can be told apart."""
    repo = tmp_path / "repo_under_test"
    shutil.copytree(digits_repo, repo)
    return repo


def test_L0_triton_close_on_parent_death(private_repo):
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tritonforge.server.process import LocalTritonServer
        s = LocalTritonServer({str(private_repo)!r}).start()
        print(json.dumps({{"pid": s.process.pid, "grpc": s.grpc_port, "http": s.http_port}}), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(parent.stdout.readline())
        assert processes_mentioning(str(private_repo)), "server should be running"
        with Client(f"127.0.0.1:{info['grpc']}") as client:
            assert client.infer("digits", {"image": np.zeros((1, 64), np.float32)})["logits"].shape == (1, 10)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: not processes_mentioning(str(private_repo)), 60), processes_mentioning(str(private_repo))
        assert wait_until(lambda: port_is_free(info["grpc"]) and port_is_free(info["http"]), 10)
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_L0_resources_released_after_signals(private_repo, sig):
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritonforge",
            "serve",
            str(private_repo),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "serving;" in line:
                break
        assert any("READY" in line for line in lines), "".join(lines)
        assert processes_mentioning(str(private_repo))
        proc.send_signal(sig)
        rest = proc.stdout.read()
        assert proc.wait(60) == 0, rest
        assert "tritonserver stopped (exit code 0)" in rest
        assert wait_until(lambda: not processes_mentioning(str(private_repo)), 30)
        assert all(port_is_free(p) for p in (http, grpc, metrics))
    finally:
        if proc.poll() is None:
            proc.kill()


def test_L0_fatal_error_handling_broken_model_does_not_take_the_server_down(private_repo):
    broken = private_repo / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.py").write_text(
        textwrap.dedent("""
        class TritonPythonModel:
            def initialize(self, args):
                raise RuntimeError("cannot open weights: disk on fire")
    """)
    )
    (private_repo / "broken" / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 1\n'
        'input { name: "x" data_type: TYPE_FP32 dims: [1] }\noutput { name: "y" data_type: TYPE_FP32 dims: [1] }\n'
    )
    with LocalTritonServer(private_repo) as server:
        states = {s.name: s for s in server.model_states()}
        assert states["broken"].state == "UNAVAILABLE"
        assert "disk on fire" in states["broken"].reason
        with Client(server.grpc_url) as client:
            assert client.infer("digits", {"image": np.zeros((2, 64), np.float32)})["logits"].shape == (2, 10)


def test_L0_two_servers_side_by_side(private_repo):
    with LocalTritonServer(private_repo) as a, LocalTritonServer(private_repo) as b:
        assert len({a.grpc_port, a.http_port, b.grpc_port, b.http_port}) == 4
        for server in (a, b):
            with Client(server.grpc_url) as client:
                assert client.infer("digits", {"image": np.ones((1, 64), np.float32)})["logits"].shape == (1, 10)


def test_L0_port_in_use_is_reported(private_repo):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalTritonServer(
            private_repo, grpc_port=port, http_port=free_ports(1)[0], metrics_port=free_ports(1)[0], startup_timeout=60
        )
        with pytest.raises(ServerError) as err:
            server.start(attempts=1)
        server.cleanup()
    assert str(port) in str(err.value) or "in use" in str(err.value).lower()
    assert wait_until(lambda: not processes_mentioning(str(private_repo)), 30)


def test_L0_a_second_serve_on_an_occupied_port_fails_instead_of_showing_the_other_server(
    private_repo, digits_server, reliability
):
    """The old start polled the port, found the other server ready, and printed its READY table as its own."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonforge",
            "serve",
            str(private_repo),
            "--grpc-port",
            str(digits_server.grpc_port),
            "--http-port",
            str(free_ports(1)[0]),
            "--metrics-port",
            str(free_ports(1)[0]),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    reliability(
        "second serve on an occupied port",
        "`tritonforge serve` on the gRPC port another server holds",
        0,
        0,
        int(proc.returncode != 2 or "READY" in proc.stdout),
        f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:120] if proc.stderr.strip() else ''}",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"gRPC port {digits_server.grpc_port}" in proc.stderr and "already in use" in proc.stderr
    assert "READY" not in proc.stdout and "serving" not in proc.stdout
    assert wait_until(lambda: not processes_mentioning(str(private_repo)), 30)


def test_L0_a_server_answering_on_our_port_is_told_apart_by_its_id(private_repo, digits_server):
    """Even if the port check loses a race, readiness is only believed from the server this start launched."""
    server = LocalTritonServer(private_repo, grpc_port=digits_server.grpc_port, startup_timeout=30)
    server.grpc_port = digits_server.grpc_port
    server.process = subprocess.Popen(["sleep", "30"])  # our own "server" never answers; the other one does
    try:
        with pytest.raises(ServerError, match="answered by another server"):
            server.wait_ready()
    finally:
        server.process.kill()
        server.process.wait()
        server.process = None


def test_L0_missing_repository_is_reported(tmp_path):
    with pytest.raises(ServerError, match="model repository not found"):
        LocalTritonServer(tmp_path / "nowhere").start()


def test_L0_a_killed_server_leaves_no_shared_memory_behind(private_repo, reliability):
    server = LocalTritonServer(private_repo).start()
    try:
        prefix = server._shm_prefix
        assert list(Path("/dev/shm").glob(f"{prefix}*")), "the Python backend should hold shared memory"
        os.killpg(server.process.pid, signal.SIGKILL)  # no chance to unlink anything
        server.process.wait(10)
    finally:
        server.stop()
        server.cleanup()
    assert not list(Path("/dev/shm").glob(f"{prefix}*"))
    reliability(
        "server SIGKILLed",
        "the server's process group SIGKILLed (no stub unlinks its shared memory), then stop()",
        requests=0,
        failed=0,
        notes="no /dev/shm region of its prefix left",
    )


def test_L0_a_stop_while_a_model_loads_is_prompt(private_repo, reliability):
    slow = private_repo / "slow" / "1"
    slow.mkdir(parents=True)
    (slow / "model.py").write_text(
        textwrap.dedent("""
        import time
        class TritonPythonModel:
            def initialize(self, args):
                time.sleep(120)
    """)
    )
    (private_repo / "slow" / "config.pbtxt").write_text(
        'name: "slow"\nbackend: "python"\nmax_batch_size: 1\n'
        'input { name: "x" data_type: TYPE_FP32 dims: [1] }\noutput { name: "y" data_type: TYPE_FP32 dims: [1] }\n'
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritonforge",
            "serve",
            str(private_repo),
            *sum(([f"--{k}-port", str(p)] for k, p in zip(("http", "grpc", "metrics"), free_ports(3), strict=True)), []),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: len(processes_mentioning(str(private_repo))) >= 3, 60)  # the server and stubs
        time.sleep(2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
        took = time.monotonic() - started
        assert took < 15, out  # not the 120 s the load would take
        assert "stopped while starting" in out
        assert wait_until(lambda: not processes_mentioning(str(private_repo)), 15)
        reliability(
            "SIGTERM while a model loads",
            "`tritonforge serve` sent SIGTERM while a model's initialize takes 120 s",
            requests=0,
            failed=0,
            notes=f"stopped in {took:.1f}s, no process left",
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def test_L0_serving_writes_no_bytecode_into_the_repository(private_repo, reliability):
    with LocalTritonServer(private_repo) as server, Client(server.grpc_url) as client:
        client.infer("digits", {"image": np.zeros((1, 64), np.float32)})
    written = [p for p in private_repo.rglob("*") if p.suffix == ".pyc" or (p.name == "__pycache__" and p.is_dir())]
    assert written == []
    reliability(
        "writable repository",
        "a writable repository served and called (the stub ignores PYTHONDONTWRITEBYTECODE)",
        requests=1,
        failed=0,
        notes="no bytecode written into the repository",
    )
