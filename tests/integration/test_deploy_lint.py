"""The deployment files pass real linters: hadolint for the Dockerfiles, yamllint for compose and Kubernetes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

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
    proc = subprocess.run([_tool("yamllint"), "-s", "-d", config, *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
