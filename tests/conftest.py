"""Shared fixtures: the trained digits example, a built repository, and a real local Triton server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
MINILM = ROOT / "examples" / "minilm"

sys.path.insert(0, str(ROOT))


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (empty if root is missing)."""
    from tritonforge.hashing import sha256_tree

    return sha256_tree(root) if root.exists() else {}


@pytest.fixture(scope="session")
def digits_spec() -> Path:
    """The digits example spec, with its model trained (train.py is a no-op when the artifacts exist)."""
    subprocess.run([sys.executable, str(DIGITS / "train.py")], check=True, capture_output=True)
    return DIGITS / "spec.yaml"


def digits_spec_copy(dest: Path, full: bool = False, **overrides) -> Path:
    """A copy of the digits spec in `dest` (factory module copied, data paths absolute), with top-level overrides.

    Unless `full`, the copy builds only the FP32 variant and skips timing (fast); a nested override is given
    as a dict and replaces that section whole.
    """
    data = yaml.safe_load((DIGITS / "spec.yaml").read_text())
    data["source"]["state_dict"] = str(DIGITS / "artifacts" / "digits_mlp.pt")
    data["validation"]["data"]["npz"] = str(DIGITS / "artifacts" / "validation.npz")
    data["calibration"]["data"]["npz"] = str(DIGITS / "artifacts" / "calibration.npz")
    if not full:
        data["variants"] = []
        data.pop("calibration")
        data["timing"] = {"enabled": False}
    data.update(overrides)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(DIGITS / "digits_model.py", dest / "digits_model.py")
    path = dest / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def outlier_digits_spec(dest: Path, **overrides) -> Path:
    """The digits spec with every variant, on the trained MLP behind an input outlier (tests/models/outlier_digits.py):
    FP32 and FP16 answer as the MLP does; INT8 (dynamic, and static MinMax) collapses on any CPU."""
    path = digits_spec_copy(dest, full=True, **overrides)
    data = yaml.safe_load(path.read_text())
    data["source"] = {"kind": "pytorch", "factory": "outlier_digits:build_model",
                      "factory_args": {"state_dict_path": str(DIGITS / "artifacts" / "digits_mlp.pt")}}
    shutil.copy(ROOT / "tests" / "models" / "outlier_digits.py", dest / "outlier_digits.py")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def minilm_spec_copy(dest: Path, **overrides) -> Path:
    """A copy of the MiniLM spec (and its modules and sentences) in `dest`: FP32 only, no timing, unless overridden."""
    data = yaml.safe_load((MINILM / "spec.yaml").read_text())
    data["variants"] = []
    data["int8_search"] = {"enabled": False}
    data["timing"] = {"enabled": False}
    data.update(overrides)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("minilm_model.py", "minilm_data.py", "sentences.txt"):
        shutil.copy(MINILM / name, dest / name)
    path = dest / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session."""
    from tritonforge.testing.redis import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def digits_repo(tmp_path_factory, digits_spec) -> Path:
    """A repository with the digits model built into it (shared; tests must not modify it)."""
    from tritonforge.build.pipeline import build

    repo = tmp_path_factory.mktemp("shared") / "model_repository"
    build(digits_spec, repo)
    return repo


@pytest.fixture(scope="session")
def digits_server(digits_repo):
    """The real local tritonserver serving the digits repository on free loopback ports."""
    from tritonforge.server.process import LocalTritonServer

    server = LocalTritonServer(digits_repo)
    server.start()
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture(scope="session")
def digits_validation(digits_spec):
    import numpy as np

    data = np.load(DIGITS / "artifacts" / "validation.npz")
    return data["image"], data["label"]


@pytest.fixture(scope="session")
def service_repo(tmp_path_factory, digits_spec) -> Path:
    """One repository with both services: digits (FP32 only) and the MiniLM text service (FP32 only)."""
    from tritonforge.build.pipeline import build

    tmp = tmp_path_factory.mktemp("services")
    repo = tmp / "model_repository"
    build(digits_spec_copy(tmp / "digits"), repo)
    build(minilm_spec_copy(tmp / "minilm"), repo)
    return repo


@pytest.fixture(scope="session")
def service_server(service_repo):
    """The real local tritonserver serving digits and minilm."""
    from tritonforge.server.process import LocalTritonServer

    server = LocalTritonServer(service_repo).start()
    yield server
    server.stop()
    server.cleanup()
