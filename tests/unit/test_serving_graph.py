"""The models a build writes and how they are wired: one public model carrying the serving logic, the native
rungs it calls at this build's version, and the runner; every setting dumped from the spec."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import MINILM

from tritonforge.builder.serving_graph import ServingPlan, plan_models
from tritonforge.builder.variants import VariantOutcome
from tritonforge.repository.manifest import Role
from tritonforge.spec import CacheSpec, RouterSpec, parse_spec


def _models(tmp_path, **serving):
    data = yaml.safe_load((MINILM / "spec.yaml").read_text())
    data["serving"].update(serving)
    spec = parse_spec(data)
    outcomes = []
    for vid in ("onnx_fp16", "onnx_fp32"):
        (tmp_path / f"{vid}.onnx").write_bytes(b"onnx")
        outcomes.append(
            VariantOutcome(
                vid,
                vid,
                "onnxruntime",
                vid[5:],
                {},
                status="passed",
                published_as=f"minilm_{vid}",
                file=str(tmp_path / f"{vid}.onnx"),
            )
        )
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    plan = ServingPlan(outcomes, outcomes[0], outcomes[1], "v1", tokenizer, {})
    return spec, {m.name: m for m in plan_models(spec, plan, version=7)}


def _settings(model) -> dict:
    return json.loads(model.config.parameters["tritonforge"].string_value)


def test_one_public_model_compute_models_first(tmp_path):
    _, models = _models(tmp_path)
    assert list(models) == ["minilm_onnx_fp16", "minilm_onnx_fp32", "minilm_ort", "minilm"]
    assert [m.role.role for m in models.values()] == [Role.RUNG, Role.RUNG, Role.RUNNER, Role.PUBLIC]
    public = models["minilm"]
    assert public.config.backend == "python" and not public.config.ensemble_scheduling.step
    assert [i.name for i in public.config.input] == ["text"]
    assert {
        "model.py",
        "runner.onnx",
        "runner_fp32.onnx",
        "tokenizer.json",
        "tritonforge_serving/router.py",
        "tritonforge_serving/cache.py",
    } <= set(public.files)


def test_rungs_are_called_at_this_build_s_version_then_run_in_process(tmp_path):
    _, models = _models(tmp_path)
    rungs = _settings(models["minilm"])["rungs"]
    assert [(r["kind"], r.get("model"), r.get("version")) for r in rungs[:2]] == [
        ("bls", "minilm_onnx_fp16", 7),
        ("bls", "minilm_onnx_fp32", 7),
    ]
    assert [(r["name"], r["file"]) for r in rungs[2:]] == [
        ("in_process:minilm_onnx_fp16", "runner.onnx"),
        ("in_process:minilm_onnx_fp32", "runner_fp32.onnx"),
    ]
    assert rungs[0]["inputs"] == {"input_ids": "TYPE_INT64", "attention_mask": "TYPE_INT64"}


def test_settings_come_from_the_spec_with_its_defaults(tmp_path):
    spec, models = _models(tmp_path)
    s = _settings(models["minilm"])
    assert s["cache"] == spec.serving.cache.model_dump(mode="json")
    assert s["cache"]["ttl_s"] == CacheSpec().ttl_s and s["cache"]["secret_env"] == "TRITONFORGE_CACHE_SECRET"
    assert s["router"] == {k: getattr(RouterSpec(), k) for k in ("breaker_failures", "breaker_seconds", "rung_timeout_ms")}
    assert s["preprocess"]["buckets"] == [16, 32, 64, 128] and s["preprocess"]["file"] == "tokenizer.json"
    assert s["max_request_bytes"] == spec.serving.max_request_bytes
    # the example declares input_ids' range (the vocabulary); the checks the public model runs take it from there
    assert s["model_inputs"][0] == {
        "name": "input_ids",
        "dtype": "int64",
        "dims": [-1],
        "dim_names": ["sequence"],
        "range": [0.0, 30521.0],
    }
    assert spec.inputs[0].range == (0, 30521)


@pytest.mark.parametrize("kind", ["none", "triton"])
def test_without_tritonforge_s_cache_the_public_model_has_none(tmp_path, kind):
    _, models = _models(tmp_path, cache={"kind": kind})
    public = models["minilm"]
    assert _settings(public)["cache"] is None
    assert public.config.response_cache.enable == (kind == "triton")


def test_every_config_pins_the_build_s_version(tmp_path):
    from tritonforge.repository.config import read_config

    _, models = _models(tmp_path)
    for name, model in models.items():
        model.write(tmp_path / "repo" / name, 7)
        assert list(read_config(tmp_path / "repo" / name / "config.pbtxt").version_policy.specific.versions) == [7]
        assert (tmp_path / "repo" / name / "7").is_dir()
