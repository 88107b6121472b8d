"""Manifests written by earlier builds still read (a rebuild over them must not need --force)."""

from __future__ import annotations

import json

from tritonforge.repository.manifest import MANIFEST_NAME, Role, read_manifest

FIELDS = {"name": "m", "tritonforge_version": "0.1.0", "fingerprint": "f", "spec_hash": "s", "inputs": {}, "tools": {}}


def _write(tmp_path, data: dict):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MANIFEST_NAME).write_text(json.dumps(data))
    return read_manifest(tmp_path, "m")


def test_a_manifest_of_the_ensemble_layout_reads(tmp_path):
    roles = {"m": "public", "m_cache": "cache", "m_tokenizer": "tokenizer", "m_pipeline": "pipeline", "m_router": "router"}
    manifest = _write(tmp_path, {**FIELDS, "version": 3, "roles": {m: {"role": r} for m, r in roles.items()}})
    assert {m: r.role.value for m, r in manifest.roles.items()} == roles
    assert manifest.roles["m"].role is Role.PUBLIC


def test_a_manifest_before_roles_reads(tmp_path):
    manifest = _write(tmp_path, {**FIELDS, "models": ["m", "m_onnx_fp32"]})
    assert {m: r.role for m, r in manifest.roles.items()} == {"m": Role.PUBLIC, "m_onnx_fp32": Role.RUNG}
    assert manifest.version == 1
