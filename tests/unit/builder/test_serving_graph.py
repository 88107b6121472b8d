"""The models a build writes and how they are wired: one public model carrying the serving logic, the native
rungs it calls at this build's version, and the runner; every setting dumped from the spec."""

from __future__ import annotations

import json

import pytest
from helpers import minilm_models

from tritonforge.repository.manifest import Role
from tritonforge.serving.settings import (
    PARAMETER,
    BlsRungSettings,
    InProcessRungSettings,
    PublicSettings,
    RunnerSettings,
    SettingsError,
    TensorSignature,
    dumps,
    from_model_config,
    loads,
)
from tritonforge.spec import CacheSpec, RouterSpec


def _models(tmp_path, **serving):
    return minilm_models(tmp_path, 7, **serving)


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


def _text(model) -> str:
    return model.config.parameters[PARAMETER].string_value


@pytest.mark.parametrize("cache", ["memory", "redis", "none"])
def test_the_settings_the_build_writes_are_what_the_models_load(tmp_path, cache):
    """The builder's settings round-trip through the parameter's JSON into the objects the serving models use."""
    spec, models = _models(tmp_path, cache={"kind": cache})
    public, runner = loads(_text(models["minilm"]), "minilm"), loads(_text(models["minilm_ort"]), "minilm_ort")
    assert isinstance(public, PublicSettings) and isinstance(runner, RunnerSettings)
    for model, settings in (("minilm", public), ("minilm_ort", runner)):
        assert dumps(settings) == _text(models[model])  # nothing dropped, added or changed on the way
        assert type(settings).from_json(json.loads(_text(models[model])), model) == settings
    assert [type(r) for r in public.rungs] == [BlsRungSettings] * 2 + [InProcessRungSettings] * 2
    assert public.rungs[0] == BlsRungSettings("minilm_onnx_fp16", 7, {"input_ids": "TYPE_INT64", "attention_mask": "TYPE_INT64"})
    assert public.model_inputs[0] == TensorSignature("input_ids", "int64", (-1,), ("sequence",), (0.0, 30521.0))
    assert public.inputs == (TensorSignature("text", "string", (1,), (), None),)
    assert public.preprocess is not None and public.preprocess.buckets == (16, 32, 64, 128)
    assert public.warmup.batch_sizes == tuple(spec.serving.warmup.batch_sizes)
    assert (public.cache is None) == (cache == "none")
    if public.cache is not None:
        assert public.cache.kind == cache and public.cache.to_json() == spec.serving.cache.model_dump(mode="json")
    assert runner == RunnerSettings("model.onnx", "onnx_fp16", spec.serving.intra_op_threads, runner.files)


def test_triton_s_model_config_gives_each_model_its_own_kind_of_settings(tmp_path):
    """What the Python models read: the config as Triton hands it to initialize (JSON), one parameter."""
    from google.protobuf import json_format

    _, models = _models(tmp_path)

    def triton_config(name):
        return json.loads(json_format.MessageToJson(models[name].config, preserving_proto_field_name=True))

    assert from_model_config(triton_config("minilm"), "minilm", PublicSettings).public == "minilm"
    assert from_model_config(triton_config("minilm_ort"), "minilm_ort", RunnerSettings).variant == "onnx_fp16"
    with pytest.raises(SettingsError, match="minilm_ort: serving settings: these are RunnerSettings, not PublicSettings"):
        from_model_config(triton_config("minilm_ort"), "minilm_ort", PublicSettings)
    with pytest.raises(SettingsError, match="minilm_onnx_fp16: its config has no 'tritonforge' parameter"):
        from_model_config(triton_config("minilm_onnx_fp16"), "minilm_onnx_fp16", PublicSettings)


def _edited(tmp_path, edit) -> str:
    _, models = _models(tmp_path)
    data = json.loads(_text(models["minilm"]))
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(colour="red"), "minilm: serving settings: unknown key 'colour'"),
        (lambda d: d.pop("warmup"), "minilm: serving settings: missing key 'warmup'"),
        (lambda d: d["cache"].update(ttl=5), "minilm: serving settings 'cache': unknown key 'ttl'"),
        (lambda d: d["router"].pop("rung_timeout_ms"), "minilm: serving settings 'router': missing key 'rung_timeout_ms'"),
        (lambda d: d["rungs"][1].pop("version"), r"minilm: serving settings 'rungs\[1\]': missing key 'version'"),
        (lambda d: d["rungs"][2].update(kind="tensorrt"), r"'rungs\[2\]': unknown rung kind 'tensorrt'"),
        (lambda d: d["model_inputs"][1].update(shape=[1]), r"'model_inputs\[1\]': unknown key 'shape'"),
        (lambda d: d.update(inputs={}), "'inputs': expected a JSON list, got dict"),
    ],
)
def test_settings_with_a_key_unknown_or_missing_are_refused_naming_it_and_the_model(tmp_path, edit, message):
    with pytest.raises(SettingsError, match=message):
        loads(_edited(tmp_path, edit), "minilm")


def test_runner_settings_are_strict_too():
    with pytest.raises(SettingsError, match="m_ort: serving settings: missing key 'files'"):
        loads('{"file": "model.onnx", "variant": "v", "intra_op_threads": 0}', "m_ort")
    with pytest.raises(SettingsError, match="m_ort: serving settings: not JSON"):
        loads("{", "m_ort")


def test_a_shadow_window_one_disagreement_would_break_is_refused_before_any_work(tmp_path):
    from helpers import mlp_spec

    from tritonforge.builder.serving_graph import shadow_settings
    from tritonforge.errors import SpecError
    from tritonforge.spec import load_spec

    def spec(root, window):
        gate = {"min_top1_agreement": 0.995, "class_score_outputs": ["y"]}  # a window needs 201 samples
        return load_spec(mlp_spec(root, "m", gate=gate, serving={"shadow": {"fraction": 0.1, "window": window}}))

    with pytest.raises(SpecError, match=r"serving.shadow.window: 150 .* at least 201"):
        shadow_settings(spec(tmp_path / "a", 150), "runner_fp32.onnx")
    assert shadow_settings(spec(tmp_path / "b", 201), "runner_fp32.onnx").judged_after == 201
