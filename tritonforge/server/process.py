"""The real `tritonserver` carried by the nvidia-pytriton wheel, run locally on CPU with the Python backend.

The binary comes from the serving environment (tritonforge.server.environment), which the wheel's
Python-backend stub runs in: a scratch tree of symlinks puts the stub for that Python beside the backend, and
since the stub ignores PYTHONPATH and takes its prefix from the first `python3` on PATH, the environment's bin/
goes first. The Python models then import exactly the serving requirements, not this process's packages.

The server runs in its own process group (Ctrl-C in a terminal reaches only us; we stop it cleanly), gets
SIGTERM if this process dies (PR_SET_PDEATHSIG), and `stop()` ends the whole group, stubs included.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tritonforge.errors import ServerError
from tritonforge.server.environment import ServingEnvironment
from tritonforge.server.ports import free_ports

LOGS_KEPT = 20  # server logs `tritonforge serve` keeps in the cache directory (the oldest go first)


def serve_log_path() -> Path:
    """Where `tritonforge serve` writes the server's log when not told: $TRITONFORGE_CACHE/logs/ (by default
    ~/.cache/tritonforge/logs/), one file per start named by its time and process id, kept after the server stops
    (for reading what happened); the newest LOGS_KEPT are kept, older ones removed."""
    from tritonforge.server.environment import cache_root

    logs = cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    kept = sorted(logs.glob("tritonserver-*.log"), key=lambda p: p.stat().st_mtime)
    for old in kept[: max(0, len(kept) - (LOGS_KEPT - 1))]:
        old.unlink(missing_ok=True)
    return logs / f"tritonserver-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # resolved here: the child runs _die_with_parent between fork and exec


def _die_with_parent() -> None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ModelState:
    """A model's state as the server's repository index reports it."""

    name: str
    version: str
    state: str
    reason: str


class PortInUse(ServerError):
    pass


class StartCancelled(ServerError):
    """stop was asked for while the server was still starting (loading its models)."""


class LocalTritonServer:
    """Start, query and stop one local tritonserver.

    with LocalTritonServer(repo) as server:
        server.grpc_url  # "127.0.0.1:PORT"
    """

    def __init__(
        self,
        repo: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        load_models: list[str] | None = None,
        cache_size: int | None = None,
        log_path: Path | None = None,
        log_verbose: int = 0,
        startup_timeout: float = 180.0,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        model_control: str = "explicit",
        poll_seconds: int = 1,
        environment: ServingEnvironment | None = None,
    ) -> None:
        if model_control not in ("explicit", "poll"):
            raise ValueError(f"model_control must be 'explicit' or 'poll', got {model_control!r}")
        self.repo = Path(repo).absolute()
        self.host = host
        self._fixed_ports = (http_port, grpc_port, metrics_port)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.load_models = load_models
        self.cache_size = cache_size
        self.log_verbose = log_verbose
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args or []
        self.extra_env = dict(env or {})
        self._environment = environment
        self.model_control = model_control
        self.poll_seconds = poll_seconds
        # What the server reports as its name: how a start tells its own server from another on the same port.
        self.server_id = f"tritonforge-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._scratch: Path | None = None
        self._shm_prefix = f"tf{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self._was_ready = False
        self._log_path = log_path
        self._own_log = log_path is None
        self.process: subprocess.Popen | None = None

    @property
    def environment(self) -> ServingEnvironment:
        """Where the server binary and the stub's Python come from (made on first use)."""
        if self._environment is None:
            self._environment = ServingEnvironment.default()
        return self._environment.ensure()

    # ---- addresses -------------------------------------------------------------------------------
    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def grpc_url(self) -> str:
        return f"{self.client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.client_host}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        assert self._log_path is not None
        return self._log_path

    # ---- lifecycle -------------------------------------------------------------------------------
    def _prepare_tree(self) -> Path:
        dist = self.environment.server_dist
        version = self.environment.python_version
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"the nvidia-pytriton wheel has no Python-backend stub for Python {version}")
        tree = Path(tempfile.mkdtemp(prefix="tritonforge-server-"))
        (tree / "bin").mkdir()
        (tree / "backends" / "python").mkdir(parents=True)
        os.symlink(dist / "bin" / "tritonserver", tree / "bin" / "tritonserver")
        for f in (dist / "backends" / "python").iterdir():
            if f.is_file():
                os.symlink(f, tree / "backends" / "python" / f.name)
        os.symlink(stub, tree / "backends" / "python" / "triton_python_backend_stub")
        os.symlink(dist / "caches", tree / "caches")
        return tree

    def _args(self, tree: Path) -> list[str]:
        args = [
            str(tree / "bin" / "tritonserver"),
            f"--model-repository={self.repo}",
            f"--backend-directory={tree / 'backends'}",
            f"--cache-directory={tree / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--id={self.server_id}",
            f"--model-control-mode={self.model_control}",
            "--exit-on-error=false",
            "--strict-readiness=false",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=10",
            f"--log-verbose={self.log_verbose}",
            # Unique shared-memory names: several local servers can run side by side, and stop() removes what a
            # killed server left in /dev/shm.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
        ]
        if self.model_control == "poll":
            args.append(f"--repository-poll-secs={self.poll_seconds}")
        else:
            models = self._expand(self.load_models) if self.load_models is not None else ["*"]
            args += [f"--load-model={m}" for m in models]
        if self.cache_bytes:
            args.append(f"--cache-config=local,size={self.cache_bytes}")
        return args + self.extra_args

    @property
    def cache_bytes(self) -> int:
        """The response cache the server starts with: `cache_size` if given, else what the repository's builds
        (those it loads) ask for with serving.triton_cache; 0: none."""
        if self.cache_size is not None:
            return self.cache_size
        from tritonforge.repository.reader import Repository

        return Repository(self.repo).triton_cache_bytes(self.load_models)

    def _expand(self, models: list[str]) -> list[str]:
        """Models to load: each named model plus every model its build owns (routers call their variants
        through BLS, which Triton cannot see as dependencies), compute models first."""
        from tritonforge.repository.reader import Repository

        repository, out = Repository(self.repo), []
        for name in models:
            group = repository.models(name) if name in repository.builds() else [name]
            out += [m for m in group if m not in out]
        return out

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(self.environment.bin_dir), env.get("PATH", "")])
        env.pop("PYTHONPATH", None)
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the repository free of __pycache__
        env.update(self.extra_env)
        return env

    def start(self, attempts: int = 3, cancel: threading.Event | None = None) -> LocalTritonServer:
        """Start the server and wait until it is ready; picks free ports unless fixed ones were given. `cancel`
        set while it starts (a SIGTERM to `tritonforge serve` during a slow model load) stops it at once."""
        if not self.repo.is_dir():
            raise ServerError(f"model repository not found: {self.repo}")
        last: Exception | None = None
        for _ in range(attempts):
            ports = free_ports(3, self.client_host)
            self.http_port, self.grpc_port, self.metrics_port = (
                fixed or free for fixed, free in zip(self._fixed_ports, ports, strict=True)
            )
            try:
                self._refuse_taken_ports()
                self._launch()
                self.wait_ready(cancel)
                return self
            except PortInUse as e:
                last = e
                self.stop()
                if all(self._fixed_ports):
                    break
            except BaseException:
                self.stop()
                raise
        raise last or ServerError("server did not start")

    def _refuse_taken_ports(self) -> None:
        """A port something already listens on is refused before the server starts: otherwise the server that
        holds it answers the readiness checks, and its models would be reported as ours."""
        for label, port in (("HTTP", self.http_port), ("gRPC", self.grpc_port), ("metrics", self.metrics_port)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed port in TIME_WAIT is free
                try:
                    s.bind((self.host or "0.0.0.0", port))
                except OSError as e:
                    raise PortInUse(
                        f"{label} port {port} on {self.host} is already in use ({e.strerror}); "
                        "stop what holds it or choose another port"
                    ) from None

    def _launch(self) -> None:
        self._scratch = self._prepare_tree()
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        log = open(self._log_path, "ab")  # noqa: SIM115 - the server writes to it until stop() closes it
        try:
            self.process = subprocess.Popen(
                self._args(self._scratch),
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, cancel: threading.Event | None = None) -> None:
        """Block until the server answers ready on gRPC; raise with the log tail if it dies or times out, and
        StartCancelled as soon as `cancel` is set."""
        import tritonclient.grpc as grpcclient

        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() < deadline:
                if cancel is not None and cancel.is_set():
                    raise StartCancelled("stopped while starting")
                if self.process.poll() is not None:
                    tail = self.log_tail()
                    if "address already in use" in tail.lower() or "already in use" in tail.lower():
                        raise PortInUse(
                            f"a port is already in use (HTTP {self.http_port}, gRPC {self.grpc_port}, metrics "
                            f"{self.metrics_port} on {self.host}); choose others or stop what holds them. "
                            f"Server log:\n{self.log_tail(5)}"
                        )
                    raise ServerError(f"tritonserver exited with code {self.process.returncode}:\n{tail}")
                name = None
                with contextlib.suppress(Exception):
                    if client.is_server_ready(client_timeout=2):
                        name = client.get_server_metadata(client_timeout=2).name
                if name == self.server_id:
                    self._was_ready = True
                    return
                if name is not None:
                    raise PortInUse(
                        f"gRPC port {self.grpc_port} is answered by another server ('{name}'), not the one "
                        f"started here; stop it or choose other ports"
                    )
                time.sleep(0.2)
        finally:
            client.close()
        raise ServerError(f"tritonserver not ready after {self.startup_timeout:.0f}s:\n{self.log_tail()}")

    def model_states(self) -> list[ModelState]:
        """Every model in the repository with its state (READY, UNAVAILABLE, ...) and the server's reason."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            index = client.get_model_repository_index(as_json=True).get("models", [])
        finally:
            client.close()
        return [
            ModelState(m["name"], m.get("version", ""), m.get("state", "UNKNOWN"), m.get("reason", ""))
            for m in sorted(index, key=lambda m: m["name"])
        ]

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the server (graceful: in-flight requests are answered), then SIGKILL its process group if it
        lingers past `timeout` (default 20 s; 3 s for a server that never became ready, which answers nothing and
        would otherwise finish loading its models first). Removes the shared memory a killed server leaves.
        Returns the exit code."""
        if timeout is None:
            timeout = 20.0 if self._was_ready else 3.0
        code = None
        if self.process is not None:
            pgid = self.process.pid
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pgid, signal.SIGKILL)
                    self.process.wait(5)
            code = self.process.returncode
            # Stubs are in the server's process group; none may outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            self.process = None
            self._remove_shm()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        return code

    def _remove_shm(self) -> None:
        """Shared-memory regions of this server's Python backend (a killed stub never unlinks its own)."""
        shm = Path("/dev/shm")
        if shm.is_dir():
            for region in shm.glob(f"{self._shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()

    def cleanup(self) -> None:
        """Remove the log file this object created (a log path given by the caller is kept)."""
        if self._own_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()
