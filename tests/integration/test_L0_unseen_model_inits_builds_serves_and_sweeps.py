"""A model tritonforge has never seen, as a new user would bring it: `tritonforge init` on its ONNX file, the
validation data supplied, built, served and perf-swept with unique inputs, with nothing else edited."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from tritonforge.client import Client, InferenceFailed
from tritonforge.perf.inputs import model_samples, select
from tritonforge.server.process import LocalTritonServer

FAST = ["--measurement-interval", "400", "--max-trials", "6", "--stability-percentage", "40"]


def _cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonforge", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests" / "models"))
    import two_inputs

    work = tmp_path_factory.mktemp("any_model")
    onnx_file = two_inputs.export(work / "two_inputs.onnx")
    proc = _cli("init", str(onnx_file), "-o", str(work / "spec.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the one thing init leaves to the user: the held-out inputs, here two lengths as batches of their own
    np.savez(
        work / "validation.npz",
        **{f"b{i}/{k}": v for i, length in enumerate((5, 11)) for k, v in two_inputs.samples(24, length, seed=i).items()},
    )
    repo = work / "model_repository"
    proc = _cli("build", str(work / "spec.yaml"), "--repo", str(repo))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work, repo, two_inputs


def test_init_then_build_gates_every_length_given(built):
    _work, repo, _module = built
    report = json.loads((repo / "two_inputs" / "build_report.json").read_text())
    fp32 = next(v for v in report["variants"] if v["id"] == "onnx_fp32")
    assert fp32["comparison"]["outputs"]["value"]["samples"] == 48  # both lengths, 24 each
    assert report["output_kinds"] == {"scores": "embedding", "value": "regression"}
    assert report["validation"]["samples"] == 48


def test_served_with_its_range_checked_and_swept_with_unique_in_range_inputs(built, tmp_path):
    _work, repo, module = built
    samples = model_samples(repo, "two_inputs")
    unique = select(samples, "unique", 2000, ranges={"ids": (0, 99)})
    ids = np.stack([s["ids"] for s in unique if s["ids"].shape == unique[0]["ids"].shape])
    assert ids.min() >= 0 and ids.max() <= 99  # never an id the 100-row embedding lacks
    with LocalTritonServer(repo) as server:
        with Client(server.grpc_url) as client:
            x = module.samples(2, 6)
            out = client.infer("two_inputs", x)
            assert out["scores"].shape == (2, 4) and out["value"].shape == (2, 1)
            x["ids"][0, 0] = 15613
            with pytest.raises(InferenceFailed, match=r"input 'ids' holds 1 value\(s\) outside its range \[0, 99\]") as e:
                client.infer("two_inputs", x)
            assert e.value.status == "StatusCode.INVALID_ARGUMENT"
        out_dir = tmp_path / "perf"
        proc = _cli(
            "perf",
            "two_inputs",
            "--url",
            server.grpc_url,
            "--metrics-url",
            server.metrics_url,
            "--repo",
            str(repo),
            "--concurrency",
            "1,2",
            "--inputs",
            "compute",
            "--output-dir",
            str(out_dir),
            *FAST,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out_dir / "perf_report.json").read_text())
    assert [(p["label"], p["concurrency"]) for p in result["points"]] == [("compute", 1), ("compute", 2)]
    for p in result["points"]:
        assert p["error"] or (p["throughput"] > 0 and p["cache_hit_rate"] in (None, 0.0)), p
    assert (out_dir / "perf_report.md").is_file() and (out_dir / "latency_vs_throughput.png").is_file()
