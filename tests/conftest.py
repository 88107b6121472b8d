"""Shared fixtures: the trained digits example, built repositories, real local Triton servers and redis-server.

Tests under tests/unit/ start no process (a guard makes any attempt fail); tests under tests/integration/ start
real ones and are marked `integration`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import DIGITS, RELIABILITY_OUT, digits_spec_copy, minilm_spec_copy


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request, monkeypatch):
    """A unit test that starts a process fails: that is an integration test, and `make test-unit` runs none."""
    if "unit" not in Path(str(request.fspath)).parts:
        return

    if importlib.util.find_spec("matplotlib") is not None:
        # matplotlib's first import on a machine builds its font cache by running fc-list: the machine's set-up,
        # not the code under test (a fresh CI machine would fail whichever plot test came first)
        import matplotlib.font_manager  # noqa: F401

    def refuse(*args, **kwargs):
        raise AssertionError(f"a unit test started a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture
def reliability(request):
    """`reliability(scenario, tried, requests, failed, wrong=0, notes="")` records a fault scenario's row for
    docs/reliability.md; rows are written only when $TRITONFORGE_RELIABILITY_OUT names a file (`make
    reliability`, benchmarks/reliability.py), and the test's own assertions decide whether it passed."""

    def record(scenario: str, tried: str, requests: int, failed: int, wrong: int = 0, notes: str = "") -> None:
        out = os.environ.get(RELIABILITY_OUT)
        if out:
            row = {
                "test": request.node.nodeid,
                "scenario": scenario,
                "tried": tried,
                "requests": requests,
                "failed": failed,
                "wrong": wrong,
                "notes": notes,
            }
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")

    return record


@pytest.fixture(scope="session")
def digits_spec() -> Path:
    """The digits example spec, with its model trained in this process (a no-op when the artifacts exist)."""
    loader = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    module.main([])
    return DIGITS / "spec.yaml"


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
    from tritonforge.builder.pipeline import build

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
    from tritonforge.builder.pipeline import build

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
