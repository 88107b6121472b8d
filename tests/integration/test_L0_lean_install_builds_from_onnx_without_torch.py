"""The base install is lean: in a fresh venv, `pip install tritonforge` (no extras) brings no torch, runs the CLI
and builds an ONNX-source spec; a PyTorch source there is a message naming the [torch] extra, not a traceback.
The client needs nothing but numpy and tritonclient[grpc]: in a venv holding only those (tritonforge installed
without its dependencies) it imports and answers from a real server.

The venvs install from PyPI (pip's cache makes it quick after the first time) a copy of the package's files, so
that pip's build writes nothing into the checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import ROOT, mlp_spec

from tritonforge.builder.runtimes.onnxruntime import OrtModel
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer

pytestmark = pytest.mark.integration

BASE_PYTHON = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
# tritonforge's base dependencies that the client must not need
NOT_FOR_THE_CLIENT = {"onnx", "onnxruntime", "onnxscript", "pydantic", "pyyaml", "ruamel.yaml", "typer", "rich"}


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _package_copy(dest: Path) -> Path:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "tritonforge", dest / "tritonforge", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _venv(path: Path) -> Path:
    _ok(_run(BASE_PYTHON, "-m", "venv", path))
    return path / "bin" / "python"


def _pip(python: Path, *args: str | Path) -> None:
    _ok(_run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args))


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return _package_copy(tmp_path_factory.mktemp("lean") / "tritonforge-src")


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory, package) -> Path:
    """A venv with `pip install tritonforge` and nothing else: its python."""
    python = _venv(tmp_path_factory.mktemp("lean") / "base")
    _pip(python, package)
    return python


@pytest.fixture(scope="module")
def onnx_spec(tmp_path_factory) -> Path:
    """A small MLP as an ONNX file, its held-out data and a spec that builds it."""
    return mlp_spec(tmp_path_factory.mktemp("lean_spec"), "lean")


@pytest.fixture(scope="module")
def lean_repo(tmp_path_factory, base_venv, onnx_spec) -> Path:
    """The ONNX-source spec built by the base install's CLI (its serving check loads it in tritonserver)."""
    repo = tmp_path_factory.mktemp("lean_repo") / "repo"
    _ok(_run(base_venv.parent / "tritonforge", "build", onnx_spec, "--repo", repo))
    return repo


def test_the_base_install_has_no_torch_and_its_cli_runs(base_venv):
    packages = {p["name"].lower() for p in json.loads(_ok(_run(base_venv, "-m", "pip", "list", "--format=json")).stdout)}
    assert not packages & {"torch", "matplotlib", "tokenizers", "redis", "scikit-learn", "tensorrt"}, packages
    assert _run(base_venv, "-c", "import torch").returncode != 0
    help_text = _ok(_run(base_venv.parent / "tritonforge", "--help")).stdout
    assert "build" in help_text and "serve" in help_text


def test_the_base_install_builds_an_onnx_source_spec(lean_repo):
    report = json.loads((lean_repo / "lean" / "build_report.json").read_text())
    assert report["primary"] in {"onnx_fp32", "onnx_fp16"}
    assert {c["model"]: c["how"] for c in report["repository_check"]["models"]}["lean"] == "tritonserver"


def test_a_pytorch_source_without_the_torch_extra_names_the_extra(tmp_path, base_venv, onnx_spec):
    spec = yaml.safe_load(onnx_spec.read_text())
    spec["source"] = {"kind": "pytorch", "factory": "net:make"}
    (tmp_path / "net.py").write_text("import torch\n\ndef make():\n    return torch.nn.Linear(16, 4)\n")
    shutil.copy2(onnx_spec.parent / "val.npz", tmp_path / "val.npz")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = _run(base_venv.parent / "tritonforge", "build", tmp_path / "spec.yaml", "--repo", tmp_path / "repo")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "source kind 'pytorch' needs torch" in out and "pip install 'tritonforge[torch]'" in out, out
    assert "Traceback" not in out and not (tmp_path / "repo").exists()


def test_the_client_needs_only_numpy_and_tritonclient(tmp_path, package, lean_repo):
    python = _venv(tmp_path / "client")
    _pip(python, "numpy", "tritonclient[grpc]")
    _pip(python, "--no-deps", package)
    x = np.random.default_rng(3).normal(size=(3, 16)).astype(np.float32)
    packages = {p["name"].lower() for p in json.loads(_ok(_run(python, "-m", "pip", "list", "--format=json")).stdout)}
    assert "tritonclient" in packages and not packages & NOT_FOR_THE_CLIENT, packages
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from tritonforge.client import Client\n"
        "with Client(sys.argv[1], timeout=30) as client:\n"
        f"    y = client.infer('lean', {{'x': np.array({x.tolist()}, dtype=np.float32)}})['y']\n"
        "print(json.dumps(y.tolist()))\n"
    )
    with LocalTritonServer(lean_repo) as server:
        answer = json.loads(_ok(_run(python, "-c", script, server.grpc_url)).stdout)
    repo = Repository(lean_repo)
    expected = OrtModel(repo.file(repo.runner("lean")), ["y"]).run({"x": x})["y"]  # the file the public model runs
    np.testing.assert_allclose(np.array(answer, dtype=np.float32), expected, rtol=1e-3, atol=1e-3)
