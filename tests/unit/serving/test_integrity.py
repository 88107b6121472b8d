"""A model's files against the sha256 its build wrote into its settings: what the public model and the runner
check at load (tritonforge/serving/integrity.py), and the hashes the build writes (serving_graph.file_hashes)."""

from __future__ import annotations

import hashlib

from helpers import minilm_models

from tritonforge.builder.serving_graph import file_hashes
from tritonforge.serving.integrity import mismatches, refusal
from tritonforge.serving.settings import PARAMETER, loads


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_files_as_the_build_wrote_them_pass(tmp_path):
    (tmp_path / "runner.onnx").write_bytes(b"weights" * 1000)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_bytes(b"x = 1\n")
    expected = {"runner.onnx": _sha(b"weights" * 1000), "pkg/a.py": _sha(b"x = 1\n")}
    assert mismatches(tmp_path, expected) == []
    assert refusal("digits", []) == ""


def test_one_flipped_bit_is_named_with_both_hashes(tmp_path):
    data = bytearray(b"weights" * 200_000)  # over one read chunk
    good = _sha(bytes(data))
    data[1_200_000] ^= 0x40
    (tmp_path / "runner.onnx").write_bytes(bytes(data))
    bad = mismatches(tmp_path, {"runner.onnx": good})
    assert bad == [("runner.onnx", good, _sha(bytes(data)))]
    reason = refusal("digits", bad)
    assert reason.startswith("digits: 1 file(s) differ") and f"runner.onnx: expected sha256 {good}" in reason
    assert f"found {_sha(bytes(data))}" in reason


def test_a_missing_file_is_a_mismatch(tmp_path):
    bad = mismatches(tmp_path, {"runner_fp32.onnx": "0" * 64})
    assert [(rel, found) for rel, _, found in bad] == [("runner_fp32.onnx", "unreadable (No such file or directory)")]


def _models(tmp_path):
    return minilm_models(tmp_path, 3)[1]


def test_the_build_writes_the_hash_of_every_file_its_python_models_place(tmp_path):
    models = _models(tmp_path)
    for name in ("minilm", "minilm_ort"):
        settings = loads(models[name].config.parameters[PARAMETER].string_value, name)
        assert settings.files == file_hashes(models[name].files)
        assert set(settings.files) == set(models[name].files)
        written = models[name].write(tmp_path / "repo" / name, 3) / "3"
        assert mismatches(written, settings.files) == []  # what the model checks at load, on what was written
    public = loads(models["minilm"].config.parameters[PARAMETER].string_value, "minilm").files
    assert public["runner.onnx"] == _sha(b"onnx_fp16") and public["runner_fp32.onnx"] == _sha(b"onnx_fp32")
    assert public["tokenizer.json"] == _sha(b"{}") and "model.py" in public and "tritonforge_serving/integrity.py" in public
