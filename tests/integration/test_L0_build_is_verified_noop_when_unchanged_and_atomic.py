"""`tritonforge build`: export + verify + publish; unchanged input is a no-op; every failure leaves the repo as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
import yaml
from helpers import DIGITS, ROOT, digits_spec_copy, tree_hashes

from tritonforge.builder.pipeline import build
from tritonforge.errors import SpecError, VerificationError
from tritonforge.repository.config import read_config
from tritonforge.repository.manifest import read_manifest
from tritonforge.repository.reader import Repository


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonforge", *args], cwd=ROOT, capture_output=True, text=True)


def test_build_writes_verified_repository(digits_repo):
    names = sorted(p.name for p in digits_repo.iterdir())
    report = json.loads((digits_repo / "digits" / "build_report.json").read_text())
    published = sorted(v["published_as"] for v in report["variants"] if v["published_as"])
    assert names == sorted(["digits", "digits_ort", *published])
    assert "digits_onnx_fp32" in published
    manifest = read_manifest(digits_repo, "digits")
    assert sorted(manifest.models) == names and manifest.models[-1] == "digits"  # the public model published last
    assert {m: r.role.value for m, r in manifest.roles.items()} == {
        "digits": "public",
        "digits_ort": "runner",
        **{m: "rung" for m in published},
    }
    assert [Repository(digits_repo).role(m).variant for m in Repository(digits_repo).rungs("digits")] == [
        next(v["id"] for v in report["variants"] if v["published_as"] == m) for m in report["serving"]["rungs"]
    ]
    assert manifest.intact(digits_repo)
    check = manifest.stages["export"]["result"]["check"]
    assert check["within_tolerance"] and check["outputs"]["logits"]["max_abs"] < 1e-4
    assert check["accuracy"]["reference"] == check["accuracy"]["candidate"]
    model = onnx.load(str(Repository(digits_repo).file("digits_onnx_fp32")))
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.ir_version <= 8


def test_every_generated_config_parses_back(digits_repo):
    configs = sorted(digits_repo.glob("*/config.pbtxt"))
    assert len(configs) == len(list(digits_repo.iterdir())) >= 3
    for path in configs:
        c = read_config(path)
        assert c.name == path.parent.name
        assert c.max_batch_size == 64
    public = read_config(digits_repo / "digits" / "config.pbtxt")
    assert (
        public.backend == "python"
        and public.dynamic_batching.max_queue_delay_microseconds == 0
        and public.HasField("dynamic_batching")
    )
    assert not public.model_warmup  # it warms its in-process rungs itself, past the cache
    runner = read_config(digits_repo / "digits_ort" / "config.pbtxt")
    assert runner.HasField("dynamic_batching") and runner.dynamic_batching.max_queue_delay_microseconds == 0
    assert [w.batch_size for w in runner.model_warmup] == [1, 16]


def test_second_build_is_a_noop_with_identical_files(tmp_path, digits_spec):
    repo = tmp_path / "model_repository"
    digits_spec = digits_spec_copy(tmp_path / "spec", variants=[{"kind": "onnx_fp16"}])
    first = build(digits_spec, repo)
    assert not first.noop
    before = tree_hashes(repo)
    stats = {p: os.stat(p).st_mtime_ns for p in repo.rglob("*")}
    second = build(digits_spec, repo)
    assert second.noop
    assert tree_hashes(repo) == before
    assert {p: os.stat(p).st_mtime_ns for p in repo.rglob("*")} == stats
    proc = _cli("build", str(digits_spec), "--repo", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
    assert tree_hashes(repo) == before


def test_changed_spec_rebuilds_and_tampering_is_noticed(tmp_path, digits_spec):
    repo = tmp_path / "repo"
    spec = digits_spec_copy(tmp_path / "spec")
    build(spec, repo)
    data = yaml.safe_load(spec.read_text())
    data["serving"]["instance_count"] = 2
    spec.write_text(yaml.safe_dump(data))
    outcome = build(spec, repo)
    assert not outcome.noop
    assert read_config(repo / "digits_ort" / "config.pbtxt").instance_group[0].count == 2
    assert build(spec, repo).noop
    (repo / "digits_ort" / "config.pbtxt").write_text("tampered")
    assert not build(spec, repo).noop
    assert read_config(repo / "digits_ort" / "config.pbtxt").instance_group[0].count == 2


def test_other_models_in_the_repository_survive(tmp_path, digits_spec):
    repo = tmp_path / "repo"
    (repo / "someone_else" / "1").mkdir(parents=True)
    (repo / "someone_else" / "config.pbtxt").write_text('name: "someone_else"\n')
    build(digits_spec_copy(tmp_path / "spec"), repo)
    assert (repo / "someone_else" / "config.pbtxt").read_text() == 'name: "someone_else"\n'


def test_verification_failure_is_reported_with_numbers(tmp_path, digits_spec):
    spec = digits_spec_copy(tmp_path, source={"kind": "pytorch", "factory": "export_differs:build_model"})
    (tmp_path / "export_differs.py").write_text(BROKEN_MODELS["export_differs"])
    with pytest.raises(VerificationError, match=r"output 'logits' max abs error 0\.5.* exceeds atol=0\.0001, rtol=0\.001"):
        build(spec, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


BROKEN_MODELS = {
    "fails_to_load": "def build_model():\n    raise RuntimeError('weights server unreachable')\n",
    "fails_to_export": (
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, image):\n"
        "        return image[image > 0.5]\n"  # data-dependent shape: not the [batch, 10] the spec declares
        "def build_model():\n    return M()\n"
    ),
    # An ONNX-only code path: the export no longer computes what the model computes. (A tolerance of 0 is not
    # enough to break verification: on the lent GPU machine ONNX Runtime reproduced PyTorch bit for bit.)
    "export_differs": (
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.lin = torch.nn.Linear(64, 10)\n"
        "    def forward(self, image):\n"
        "        y = self.lin(image)\n"
        "        return y + 0.5 if torch.onnx.is_in_onnx_export() else y\n"
        "def build_model():\n    return M()\n"
    ),
}


@pytest.mark.parametrize(
    "case, message",
    [
        ("bad_spec", "field 'max_batch_size'"),
        ("missing_file", "field 'source.state_dict': file not found"),
        ("fails_to_load", "weights server unreachable"),
        ("fails_to_export", "export to ONNX failed"),
        ("export_differs", "does not reproduce the source model"),
    ],
)
def test_cli_failures_exit_2_and_leave_repository_unchanged(tmp_path, digits_repo, case, message):
    repo = tmp_path / "repo"
    shutil.copytree(digits_repo, repo, symlinks=True)
    before = tree_hashes(repo)
    spec = digits_spec_copy(tmp_path / "spec")
    data = yaml.safe_load(spec.read_text())
    if case == "bad_spec":
        data["max_batch_size"] = "lots"
    elif case == "missing_file":
        data["source"]["state_dict"] = str(tmp_path / "absent.pt")
    else:
        (spec.parent / f"{case}.py").write_text(BROKEN_MODELS[case])
        data["source"] = {"kind": "pytorch", "factory": f"{case}:build_model"}
    spec.write_text(yaml.safe_dump(data))
    proc = _cli("build", str(spec), "--repo", str(repo))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_hashes(repo) == before


def _digits_module():
    sys.path.insert(0, str(DIGITS))
    from digits_model import build_model

    m = build_model()
    m.load_state_dict(torch.load(DIGITS / "artifacts" / "digits_mlp.pt", weights_only=True))
    return m.eval()


@pytest.mark.parametrize("kind", ["torchscript", "exported_program", "onnx"])
def test_other_source_kinds(tmp_path, digits_spec, kind):
    module = _digits_module()
    example = torch.zeros(4, 64)
    if kind == "torchscript":
        path = tmp_path / "digits.ts"
        torch.jit.save(torch.jit.trace(module, example), path)
    elif kind == "exported_program":
        path = tmp_path / "digits.pt2"
        torch.export.save(
            torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},)), path
        )
    else:
        path = tmp_path / "digits.onnx"
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
            dynamo=False,
        )
    spec = digits_spec_copy(tmp_path / "spec", source={"kind": kind, "path": str(path)})
    outcome = build(spec, tmp_path / "repo")
    check = outcome.export_check
    assert check["within_tolerance"], check
    assert check["accuracy"]["candidate"] > 0.9
    assert read_config(tmp_path / "repo" / "digits_ort" / "config.pbtxt").input[0].name == "image"


def test_onnx_source_with_wrong_signature_is_rejected(tmp_path, digits_spec):
    module = _digits_module()
    path = tmp_path / "digits.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(4, 64),),
        str(path),
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    spec = digits_spec_copy(tmp_path / "spec", source={"kind": "onnx", "path": str(path)})
    with pytest.raises(SpecError, match=r"field 'inputs\[0\].name': .*digits.onnx has no input 'image' \(its inputs: pixels\)"):
        build(spec, tmp_path / "repo")  # refused when the build reads its inputs, before export


def test_corrupt_onnx_source_is_rejected(tmp_path, digits_spec):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage" * 10)
    spec = digits_spec_copy(tmp_path / "spec", source={"kind": "onnx", "path": str(path)})
    proc = _cli("build", str(spec), "--repo", str(tmp_path / "repo"))
    assert proc.returncode == 2
    assert "corrupt.onnx" in proc.stderr


def test_export_module_runs_alone(tmp_path, digits_spec):
    out = tmp_path / "alone.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "tritonforge.builder.exporters.torch2onnx", str(digits_spec), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dynamo exporter" in proc.stdout
    onnx.checker.check_model(onnx.load(str(out)))
    assert np.isfinite(out.stat().st_size)


def test_progress_lines_print_library_text_as_written():
    """A skip reason such as "pip install 'tritonforge[gpu]'" must not lose its brackets to rich markup
    (seen on the lent GPU machine, where TensorRT was missing)."""
    from tritonforge.cli.render import RichReporter, console, model_states_table
    from tritonforge.server.process import ModelState

    reason = "tensorrt is not installed (No module named 'tensorrt'); pip install 'tritonforge[gpu]'"
    with console.capture() as captured:
        reporter = RichReporter(prefix="[digits] ")
        with reporter.stage("variant [trt_fp16]"):
            reporter.info(f"trt_fp16: skipped: {reason}")
        console.print(model_states_table([ModelState("digits_trt_fp16", "1", "UNAVAILABLE", "[StatusCode.x] no plan")]))
    text = captured.get()
    assert "[digits] variant [trt_fp16]" in text and f"[digits] trt_fp16: skipped: {reason}" in text
    assert "[StatusCode.x] no plan" in text


def test_dynamic_dims_are_named_from_the_spec(service_repo):
    """MiniLM's inputs say dim_names: [sequence]: the exported graph's dims are batch and sequence (not s70), and
    both inputs share the one name, so the graph knows their lengths agree."""
    repo = Repository(service_repo)
    graph = onnx.load(str(repo.file("minilm_onnx_fp32")), load_external_data=False).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    config = read_config(service_repo / "minilm_onnx_fp32" / "config.pbtxt")
    assert [list(i.dims) for i in config.input] == [[-1], [-1]]
