"""The README's quickstart runs as written: its `bash quickstart` blocks, in order, as one script in an empty
directory (export a model to ONNX, init, build, serve, call with tritonforge.client and tritonclient, perf, stop).
The README is the source of truth: change the commands there and this test runs the new ones."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.integration

BLOCK = re.compile(r"^```bash quickstart\n(.*?)^```$", re.S | re.M)


def quickstart_script(readme: str) -> str:
    """The README's quickstart blocks as one script that stops at the first failing command."""
    blocks = BLOCK.findall(readme)
    assert blocks, "README.md has no ```bash quickstart blocks"
    return "set -euo pipefail\n" + "\n".join(blocks)


def test_the_quickstart_blocks_are_found_in_order():
    script = quickstart_script((ROOT / "README.md").read_text())
    steps = [line.split()[1] for line in script.splitlines() if line.startswith("tritonforge ")]
    assert steps == ["init", "build", "serve", "perf"]


def test_the_readme_quickstart_runs_as_written(tmp_path):
    script = quickstart_script((ROOT / "README.md").read_text())
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=540)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the server too, if the script stopped before `kill %1`
    log = tmp_path / "serve.log"
    detail = out[-4000:] + ("\n--- serve.log ---\n" + log.read_text()[-2000:] if log.exists() else "")
    assert proc.returncode == 0, detail
    assert "call: 'tinycnn', the public model" in out, detail
    assert "tritonclient agrees: True" in out, detail
    assert (tmp_path / "repo" / "tinycnn" / "config.pbtxt").is_file()
    assert (tmp_path / "perf" / "perf_report.md").is_file()
