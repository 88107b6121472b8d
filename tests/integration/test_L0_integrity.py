"""Corrupted weights are never served as READY with wrong answers: a file whose sha256 is not its build's keeps
the public model from loading (Triton says UNAVAILABLE, naming the file), and a corruption no model can check
for itself (a native model's file; here simulated by rewriting the expected hash) fails the readiness probe,
which compares the answer to its probe sample with the build's reference.

The probe compares one sample's class: flipped exponent bits give scores of 1e37 whose argmax is the reference's
by chance often enough (it was, on some machines, for whichever variant their timing picked as runner.onnx), so
the probe's test corrupts the file in a way that changes every sample's class by construction: its outputs
negated (argmax becomes argmin, never the reference's class for a sample with a positive margin)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tritonforge.client import Client
from tritonforge.hashing import sha256_file
from tritonforge.repository.config import read_config, write_config
from tritonforge.repository.reader import Repository
from tritonforge.server import probe
from tritonforge.server.process import LocalTritonServer

pytestmark = pytest.mark.integration
FLIPPED = 64


def flip_exponent_bits(path: Path, count: int = FLIPPED, bit: int = 30) -> None:
    """Flip one exponent bit (bit 27 of float32: each value times or over 2**16) in `count` float weights of an
    ONNX file, spread over its largest float tensors; the file stays a valid ONNX model of the same graph."""
    model = onnx.load(str(path))
    floats = sorted(
        (t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT), key=lambda t: -int(np.prod(t.dims))
    )
    left = count
    for tensor in floats:
        values = numpy_helper.to_array(tensor).copy()
        flat = values.reshape(-1).view(np.uint32)
        picked = np.linspace(0, flat.size - 1, min(left, flat.size)).astype(int)
        flat[picked] ^= np.uint32(1 << bit)
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
        left -= len(picked)
        if not left:
            break
    assert not left, f"{path} holds fewer than {count} float weights"
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


def negate_outputs(path: Path) -> None:
    """Rewrite an ONNX file so that each graph output is the negation of what it was (a Neg node appended);
    whichever variant the file holds (FP32, FP16, INT8), it stays a valid model of the same inputs and outputs."""
    model = onnx.load(str(path))
    for output in model.graph.output:
        inner = f"{output.name}_before_corruption"
        for node in model.graph.node:
            node.output[:] = [inner if o == output.name else o for o in node.output]
        model.graph.node.append(onnx.helper.make_node("Neg", [inner], [output.name]))
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


def _corrupted_copy(digits_repo: Path, tmp_path: Path, corrupt=flip_exponent_bits) -> tuple[Path, Path, str]:
    repo = tmp_path / "model_repository"
    shutil.copytree(digits_repo, repo)
    runner = Repository(repo).version_dir("digits") / "runner.onnx"
    before = sha256_file(runner)
    corrupt(runner)
    assert sha256_file(runner) != before
    return repo, runner, before


def _ask_all(server: LocalTritonServer, images: np.ndarray, reference: np.ndarray) -> tuple[int, int]:
    """Each held-out image alone to the public model: (answers refused, answers whose class is not FP32's)."""
    refused = wrong = 0
    with Client(server.grpc_url) as client:
        for image, ref in zip(images, reference, strict=True):
            try:
                logits = client.infer("digits", {"image": image[None]})["logits"]
            except Exception:  # UNAVAILABLE: Triton refuses every request to a model that did not load
                refused += 1
                continue
            wrong += int(logits.argmax() != ref.argmax())
    return refused, wrong


def _fp32_reference(repo: Path, images: np.ndarray) -> np.ndarray:
    from tritonforge.builder.runtimes.onnxruntime import OrtModel

    return OrtModel(Repository(repo).find_file("digits_onnx_fp32"), ["logits"]).run({"image": images})["logits"]


def test_a_corrupted_runner_file_keeps_the_public_model_from_loading(tmp_path, digits_repo, digits_validation, reliability):
    repo, runner, before = _corrupted_copy(digits_repo, tmp_path)
    ort_file = Repository(repo).version_dir("digits_ort") / "model.onnx"  # the runner model checks itself too
    ort_before = sha256_file(ort_file)
    flip_exponent_bits(ort_file)
    images = digits_validation[0].astype(np.float32)
    reference = _fp32_reference(digits_repo, images)
    with LocalTritonServer(repo) as server:
        states = {s.name: s for s in server.model_states()}
        state = states["digits"]
        refused, wrong = _ask_all(server, images, reference)
        problems = probe.check(repo, f"http://{server.http_url}", 10.0)
    named = state.state == "UNAVAILABLE" and f"runner.onnx: expected sha256 {before}, found {sha256_file(runner)}" in state.reason
    found = sha256_file(runner)
    reliability(
        "corrupted weights the models check",
        f"{FLIPPED} exponent bits flipped in digits/N/runner.onnx "
        "and in digits_ort/N/model.onnx (each still a valid ONNX file), then a server on the repository and "
        f"each of {len(images)} held-out images sent",
        len(images),
        0,
        wrong + int(not named),
        f"digits UNAVAILABLE, all {refused} refused: 'runner.onnx: expected sha256 {before[:12]}..., found "
        f"{found[:12]}...'; digits_ort UNAVAILABLE likewise; the probe: not ready",
    )
    assert named, (state.state, state.reason)
    assert states["digits_ort"].state == "UNAVAILABLE"
    assert (
        f"digits_ort: 1 file(s) differ from what its build wrote (model.onnx: expected sha256 {ort_before}"
        in states["digits_ort"].reason
    ), states["digits_ort"].reason
    assert refused == len(images) and wrong == 0
    assert problems and problems[0].startswith("digits: not ready"), problems


def test_a_corruption_no_model_can_check_fails_the_readiness_probe_naming_the_output(
    tmp_path, digits_repo, digits_validation, reliability
):
    repo, runner, _ = _corrupted_copy(digits_repo, tmp_path, negate_outputs)
    # as a native model's file would be (no Python, no hash check): the public model's expected hash rewritten
    config = read_config(repo / "digits" / "config.pbtxt")
    settings = json.loads(config.parameters["tritonforge"].string_value)
    settings["files"]["runner.onnx"] = sha256_file(runner)
    config.parameters["tritonforge"].string_value = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    write_config(config, repo / "digits")
    images = digits_validation[0].astype(np.float32)
    reference = _fp32_reference(digits_repo, images)
    with LocalTritonServer(repo) as server:
        state = {s.name: s for s in server.model_states()}["digits"]
        refused, wrong = _ask_all(server, images, reference)
        problems = probe.check(repo, f"http://{server.http_url}", 10.0)
        cli = probe.main(["--repo", str(repo), "--http-url", f"http://{server.http_url}", "--timeout", "10"])
    detected = cli == 1 and any(p.startswith("digits: output 'logits' disagrees with the build's reference") for p in problems)
    reliability(
        "corrupted file no model checks",
        "digits/N/runner.onnx's outputs negated (a Neg node appended) and "
        "its expected hash rewritten (as a native model's file: loaded READY), then the readiness probe",
        1,
        0,
        int(not detected),
        f"{wrong} of {len(images)} answers wrong when asked; the probe: " + (problems[0] if problems else "ready"),
    )
    assert state.state == "READY" and refused == 0
    assert wrong > len(images) // 2, "the corruption must change the answers for this test to mean anything"
    assert detected, problems
