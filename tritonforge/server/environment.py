"""The local server's own environment, apart from the one tritonforge is installed in.

The Python-backend stub of the local tritonserver (server 2.51, Triton 24.10) needs numpy<2 (numpy 2 makes it
return empty tensors), and it should run exactly the packages the serving container installs. A user's
environment is on numpy 2 and current protobuf. So the local server gets its own:

  venv/    a virtual environment made from tritonforge/serving/requirements.txt, the file docker/Dockerfile.serve
           installs too; the stub imports from it (its bin/ goes first on the server's PATH)
  tools/   the server binary (the nvidia-pytriton wheel's tritonserver, with its Python-backend stubs) and
           perf_analyzer (the tritonclient 2.50 manylinux wheel, the newest whose binary runs on glibc 2.36, with
           libcudart from nvidia-cuda-runtime-cu12), installed as files: nothing of theirs is imported

It lives in a cache directory ($TRITONFORGE_CACHE, else ~/.cache/tritonforge) keyed by a hash of everything that
defines it, so a changed requirements file makes a new one; `make` creates it, and so does the first
`tritonforge serve` (or anything that starts the local server) that needs it, saying so while it installs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tritonforge.errors import ServerError

REQUIREMENTS = Path(__file__).resolve().parents[1] / "serving" / "requirements.txt"
# The server binary and perf_analyzer: files only, installed without their Python dependencies.
TOOLS = ["nvidia-pytriton==0.7.0", "tritonclient==2.50.0", "nvidia-cuda-runtime-cu12==12.9.79"]
# The stub embeds Debian's libpython3.11, so the environment's standard library must be Debian's as well.
DEFAULT_PYTHON = "/usr/bin/python3.11"


def cache_root() -> Path:
    return Path(os.environ.get("TRITONFORGE_CACHE") or Path.home() / ".cache" / "tritonforge")


def _python() -> str:
    chosen = os.environ.get("TRITONFORGE_SERVING_PYTHON") or DEFAULT_PYTHON
    if not Path(chosen).is_file():
        raise ServerError(
            f"the local server's environment needs {chosen} (Debian's python3.11, whose libpython the "
            "Python-backend stub embeds): apt-get install python3.11 python3.11-venv libpython3.11, "
            "or set TRITONFORGE_SERVING_PYTHON"
        )
    return chosen


class ServingEnvironment:
    """One serving environment: `ensure()` makes it if it is missing, then its paths can be used."""

    def __init__(self, root: Path, python: str) -> None:
        self.root = Path(root)
        self.base_python = python

    @classmethod
    def default(cls) -> ServingEnvironment:
        """The environment for this tritonforge: $TRITONFORGE_SERVING_ENV if set, else one in the cache directory
        named after the hash of what defines it."""
        python = _python()
        chosen = os.environ.get("TRITONFORGE_SERVING_ENV")
        if chosen:
            return cls(Path(chosen), python)
        return cls(cache_root() / f"serving-{cls.key(python)[:16]}", python)

    @staticmethod
    def key(python: str) -> str:
        h = hashlib.sha256()
        h.update(REQUIREMENTS.read_bytes())
        h.update("\n".join(TOOLS).encode())
        h.update(python.encode())
        return h.hexdigest()

    # ---- paths ------------------------------------------------------------------------------------
    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def bin_dir(self) -> Path:
        """Goes first on the server's PATH: the stub takes its Python prefix from the first python3 there."""
        return self.venv / "bin"

    @property
    def tools(self) -> Path:
        return self.root / "tools"

    @property
    def server_dist(self) -> Path:
        return self.tools / "pytriton" / "tritonserver"

    @property
    def perf_analyzer(self) -> Path:
        return self.tools / "bin" / "perf_analyzer"

    @property
    def cudart_dir(self) -> Path:
        return self.tools / "nvidia" / "cuda_runtime" / "lib"

    @property
    def python_version(self) -> str:
        """major.minor of the venv's Python (which stub the server runs)."""
        cfg = (self.venv / "pyvenv.cfg").read_text()
        version = next(line.split("=", 1)[1].strip() for line in cfg.splitlines() if line.startswith("version"))
        return ".".join(version.split(".")[:2])

    @property
    def _marker(self) -> Path:
        return self.root / ".complete"

    def ready(self) -> bool:
        return self._marker.is_file() and self.python.is_file() and (self.server_dist / "bin" / "tritonserver").is_file()

    # ---- making it ----------------------------------------------------------------------------------
    def ensure(self, say: Callable[[str], None] | None = None) -> ServingEnvironment:
        """Make the environment unless it is there (one maker at a time; a half-made one is never used)."""
        if self.ready():
            return self
        say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / f".{self.root.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.ready():
                return self
            say(
                f"making the local server's environment in {self.root} (once; about a minute): "
                f"{REQUIREMENTS.name} for the Python-backend models, then the server and perf_analyzer"
            )
            staging = Path(tempfile.mkdtemp(prefix=f"{self.root.name}.staging-", dir=self.root.parent))
            try:
                self._make(staging, say)
                if self.root.exists():
                    shutil.rmtree(self.root)
                staging.rename(self.root)  # only venv/bin/python is used, and it finds its prefix where it lies
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
            self._marker.write_text(self.key(self.base_python) + "\n")
            say(f"the local server's environment is ready: {self.root}")
        return self

    def _make(self, root: Path, say: Callable[[str], None]) -> None:
        venv, pip = (
            root / "venv",
            [
                str(root / "venv" / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-warn-script-location",
            ],
        )
        say(f"  venv from {self.base_python}")
        self._run([self.base_python, "-m", "venv", str(venv)], "creating the venv")
        say(f"  pip install -r {REQUIREMENTS}")
        self._run([*pip, "-r", str(REQUIREMENTS)], f"installing {REQUIREMENTS}")
        say(f"  pip install --target tools --no-deps {' '.join(TOOLS)}")
        self._run([*pip, "--no-deps", "--target", str(root / "tools"), *TOOLS], "installing the server and perf_analyzer")
        stubs = root / "tools" / "pytriton" / "tritonserver" / "python_backend_stubs"
        version = subprocess.run(
            [self.base_python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not (stubs / version / "triton_python_backend_stub").is_file():
            raise ServerError(
                f"the nvidia-pytriton wheel has no Python-backend stub for Python {version} "
                f"(it has {sorted(p.name for p in stubs.iterdir())}); set TRITONFORGE_SERVING_PYTHON"
            )

    @staticmethod
    def _run(cmd: list[str], what: str) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServerError(f"{what} failed ({' '.join(cmd[:4])} ...):\n{(proc.stdout + proc.stderr)[-1500:]}")

    def package_version(self, name: str) -> str:
        """The version of a package installed in the venv (what the stub imports)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            return subprocess.run(
                [str(self.python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        return ""
