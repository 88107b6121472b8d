"""Model Analyzer (triton-model-analyzer from PyPI, in an environment of its own: `make model-analyzer`) profiles a
built repository in remote mode against the real local tritonserver, from the config `tritonforge
model-analyzer-config` writes: it loads the swept config through Triton's load API (two instances), measures it and
the built config with the bundled perf_analyzer, never meets the response cache, and writes its results."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import yaml
from helpers import ROOT, metric

from tritonforge.serving.settings import PARAMETER, PublicSettings, loads

MODEL_ANALYZER = "TRITONFORGE_MODEL_ANALYZER"  # `make test` names the one `make model-analyzer` installs: never skipped
MA_VENV = ROOT / ".venv-model-analyzer"


def _model_analyzer() -> str | None:
    """$TRITONFORGE_MODEL_ANALYZER (a missing file then fails the test), else `make model-analyzer`'s, else one on PATH."""
    chosen = os.environ.get(MODEL_ANALYZER)
    if chosen:
        return chosen
    installed = MA_VENV / "bin" / "model-analyzer"
    return str(installed) if installed.is_file() else shutil.which("model-analyzer")


MODEL_ANALYZER_BIN = _model_analyzer()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        MODEL_ANALYZER_BIN is None,
        reason="Model Analyzer is not installed: `make model-analyzer` installs triton-model-analyzer into "
        ".venv-model-analyzer (`make test` does, and runs this test)",
    ),
]


@pytest.fixture(scope="session")
def model_analyzer() -> str:
    """The model-analyzer program, checked before any build or server starts."""
    path = str(MODEL_ANALYZER_BIN)
    assert Path(path).is_file(), f"${MODEL_ANALYZER}={path}: no such file (`make model-analyzer` installs it)"
    return path


@pytest.fixture(scope="module")
def server(digits_repo):
    """A server of its own: Model Analyzer leaves the last config it tried loaded, which the shared one must not see."""
    from tritonforge.server.process import LocalTritonServer

    server = LocalTritonServer(digits_repo, load_models=["digits"]).start()
    yield server
    server.stop()
    server.cleanup()


def _cache_lookups(server) -> float:
    return sum(metric(server.metrics_url, f"tritonforge_cache_{n}_total", model="digits") for n in ("hits", "misses"))


@pytest.mark.timeout(420)
def test_model_analyzer_profiles_the_built_and_the_swept_config(model_analyzer, digits_repo, server, tmp_path):
    out = tmp_path / "ma"
    written = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonforge",
            "model-analyzer-config",
            "digits",
            "--repo",
            str(digits_repo),
            "--output-dir",
            str(out),
            "--url",
            server.grpc_url,
            "--metrics-url",
            server.metrics_url,
            "--batch-size",
            "1",
            "--concurrency",
            "1",
            "--instances",
            "2",
            "--delays",
            "0",
            "--stability-percentage",
            "50",  # a short profile on a shared CPU
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert written.returncode == 0, written.stdout + written.stderr
    config = yaml.safe_load((out / "config.yaml").read_text())
    lookups = _cache_lookups(server)

    proc = subprocess.run(
        [model_analyzer, "profile", "-f", str(out / "config.yaml")], cwd=tmp_path, capture_output=True, text=True, timeout=360
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Skipping illegal run configuration" not in log and "Profile complete. Profiled 2 configurations" in log, log[-4000:]

    with open(out / "results" / "results" / "metrics-model-inference.csv", newline="") as f:
        rows = {row["Model Config Path"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"digits_config_default", "digits_config_0"}, rows
    assert rows["digits_config_default"]["Instance Group"] == "1:CPU" and rows["digits_config_0"]["Instance Group"] == "2:CPU"
    for row in rows.values():
        assert row["Model"] == "digits" and row["Batch"] == "1" and row["Concurrency"] == "1"
        assert row["Max Batch Size"] == "64" and float(row["Throughput (infer/sec)"]) > 0
    assert (Path(config["checkpoint_directory"]) / "0.ckpt").is_file()

    # The swept config was really loaded: the server still serves it (two instances, its cache off), and no
    # measurement met the response cache.
    client = grpcclient.InferenceServerClient(server.grpc_url)
    loaded = client.get_model_config("digits").config
    assert loaded.instance_group[0].count == 2 and loaded.max_batch_size == 64
    settings = loads(loaded.parameters[PARAMETER].string_value, "digits")
    assert isinstance(settings, PublicSettings) and settings.cache is None
    assert _cache_lookups(server) == lookups
    client.unload_model("digits")  # a plain load would keep the override: Triton reloads it only when files change
    deadline = time.monotonic() + 60
    while client.is_model_ready("digits") and time.monotonic() < deadline:
        time.sleep(0.2)
    client.load_model("digits")
    assert client.get_model_config("digits").config.instance_group[0].count == 1
