"""How a build wires the models it publishes: the public ensemble, the response cache's place in it, and the
pipeline a cache miss computes (unit tests on the planned configs; no export, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tritonforge.build.serving_graph import ServingPlan, plan_models
from tritonforge.build.spec import parse_spec
from tritonforge.build.variants import VariantOutcome

from conftest import MINILM


def _models(tmp_path: Path, **cache) -> dict:
    data = yaml.safe_load((MINILM / "spec.yaml").read_text())
    data["serving"]["cache"] = {**data["serving"]["cache"], **cache}
    spec = parse_spec(data)
    fp32 = VariantOutcome("onnx_fp32", "onnx_fp32", "onnxruntime", "fp32", {}, status="passed",
                          published_as="minilm_onnx_fp32", file=str(tmp_path / "model.onnx"))
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    plan = ServingPlan([fp32], fp32, fp32, "v1", tokenizer, {})
    return {m.name: m.config for m in plan_models(spec, plan)}


def _steps(config) -> list[str]:
    return [s.model_name for s in config.ensemble_scheduling.step]


def _inputs(config) -> list[str]:
    return [i.name for i in config.input]


def test_cache_before_the_tokenizer_is_keyed_on_texts_and_misses_into_the_pipeline(tmp_path):
    models = _models(tmp_path)
    assert _steps(models["minilm"]) == ["minilm_cache"]
    assert _inputs(models["minilm_cache"]) == ["text"]
    assert models["minilm_cache"].parameters["target"].string_value == "minilm_pipeline"
    assert _steps(models["minilm_pipeline"]) == ["minilm_tokenizer", "minilm_router"]
    assert _inputs(models["minilm_pipeline"]) == ["text"]
    assert not models["minilm"].response_cache.enable


def test_cache_after_the_tokenizer_is_keyed_on_token_ids(tmp_path):
    models = _models(tmp_path, placement="after_preprocess")
    assert "minilm_pipeline" not in models
    assert _steps(models["minilm"]) == ["minilm_tokenizer", "minilm_cache"]
    assert _inputs(models["minilm_cache"]) == ["input_ids", "attention_mask"]
    assert models["minilm_cache"].parameters["target"].string_value == "minilm_router"
    step = models["minilm"].ensemble_scheduling.step[1]
    assert dict(step.input_map) == {"input_ids": "input_ids", "attention_mask": "attention_mask"}


@pytest.mark.parametrize("kind", ["none", "triton"])
def test_without_a_python_cache_the_ensemble_is_tokenizer_then_router(tmp_path, kind):
    models = _models(tmp_path, kind=kind)
    assert "minilm_cache" not in models and "minilm_pipeline" not in models
    assert _steps(models["minilm"]) == ["minilm_tokenizer", "minilm_router"]
    assert models["minilm"].response_cache.enable == (kind == "triton")


def test_placement_is_validated(tmp_path):
    from tritonforge.errors import SpecError

    with pytest.raises(SpecError, match="placement"):
        _models(tmp_path, placement="somewhere")
