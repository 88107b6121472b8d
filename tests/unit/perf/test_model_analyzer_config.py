"""The Model Analyzer config `tritonforge model-analyzer-config` writes, read without Model Analyzer or a server: the
keys Model Analyzer 1.58 reads in remote mode, client batch sizes within max_batch_size, max_batch_size never swept
below a preferred or warm-up batch size, the response cache off in the configs it starts from, and the repository
left as it was."""

from __future__ import annotations

import json
import stat

import pytest
import yaml
from helpers import DIGITS, planned_repository, tree_hashes
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.perf import model_analyzer_config as mac
from tritonforge.perf.model_analyzer_config import Endpoints, ModelAnalyzerConfigError, Sweep, write_config
from tritonforge.repository.config import read_config
from tritonforge.repository.reader import Repository
from tritonforge.serving.settings import PARAMETER, PublicSettings, loads

# The profile config keys this writes, each a Model Analyzer 1.58 option (docs/config.md of triton-model-analyzer)
MA_KEYS = {
    "model_repository",
    "triton_launch_mode",
    "client_protocol",
    "triton_grpc_endpoint",
    "triton_metrics_url",
    "perf_analyzer_path",
    "export_path",
    "checkpoint_directory",
    "output_model_repository_path",
    "override_output_model_repository",
    "run_config_search_mode",
    "run_config_search_disable",
    "run_config_search_min_model_batch_size",
    "run_config_search_max_model_batch_size",
    "run_config_search_min_concurrency",
    "run_config_search_max_concurrency",
    "run_config_search_min_instance_count",
    "run_config_search_max_instance_count",
    "profile_models",
}
MODEL_KEYS = {"cpu_only", "parameters", "model_config_parameters", "perf_analyzer_flags"}


def _digits(**serving: object) -> dict:
    """The digits spec, its serving section overridden: max_batch_size 16, preferred sizes 8 and 16, a memory cache."""
    data = yaml.safe_load((DIGITS / "spec.yaml").read_text())
    data["max_batch_size"] = 16
    data["serving"].update(
        {"dynamic_batching": {"max_queue_delay_us": 0, "preferred_batch_sizes": [8, 16]}, "cache": {"kind": "memory"}}
    )
    data["serving"].update(serving)
    return data


@pytest.fixture
def repo(tmp_path):
    return planned_repository(tmp_path / "model_repository", _digits())


def test_digits_config_sweeps_only_what_the_build_allows_in_model_analyzers_keys(repo, tmp_path):
    before = tree_hashes(repo)
    written = write_config(
        repo,
        tmp_path / "ma",
        sweep=Sweep(batch_sizes=(1, 8, 32), concurrency=(1, 4), instances=(1, 2), delays_us=(0, 500)),
        endpoints=Endpoints(grpc="10.0.0.5:8001"),
        perf_analyzer="perf_analyzer",
    )
    assert tree_hashes(repo) == before  # nothing written into the repository
    text = written.path.read_text()
    assert text.startswith("# Model Analyzer") and f"model-analyzer profile -f {written.path}" in text
    data = yaml.safe_load(text)
    assert set(data) == MA_KEYS
    assert data["triton_launch_mode"] == "remote" and data["client_protocol"] == "grpc"
    assert data["triton_grpc_endpoint"] == "10.0.0.5:8001"
    assert data["triton_metrics_url"] == "http://10.0.0.5:8002/metrics"
    assert data["run_config_search_mode"] == "brute" and data["run_config_search_disable"] is True
    assert data["override_output_model_repository"] is True and data["perf_analyzer_path"] == "perf_analyzer"

    # the public model only (not its runner or rung)
    assert list(data["profile_models"]) == ["digits"]
    digits = data["profile_models"]["digits"]
    assert set(digits) == MODEL_KEYS and digits["cpu_only"] is True
    max_batch_size = Repository(repo).config("digits").max_batch_size
    assert max_batch_size == 16
    assert digits["parameters"] == {"batch_sizes": [1, 8], "concurrency": [1, 4]}  # 32 > 16 left out, and said so
    assert all(b <= max_batch_size for b in digits["parameters"]["batch_sizes"])
    assert any("[32] left out: above its max_batch_size 16" in n for n in written.notes)
    assert digits["model_config_parameters"] == {
        "max_batch_size": [16],  # kept: never below the preferred sizes 8 and 16
        "instance_group": [{"kind": "KIND_CPU", "count": [1, 2]}],
        "dynamic_batching": {"max_queue_delay_microseconds": [0, 500]},  # preferred_batch_size is not swept
    }
    # a search switched on the command line stays within the configs: max_batch_size 16 (largest preferred) to 16
    assert (data["run_config_search_min_model_batch_size"], data["run_config_search_max_model_batch_size"]) == (16, 16)
    assert (data["run_config_search_min_concurrency"], data["run_config_search_max_concurrency"]) == (1, 4)

    flags = digits["perf_analyzer_flags"]
    assert flags["stability-percentage"] == 15.0 and "shape" not in flags  # fixed dims need no --shape
    entries = json.loads((tmp_path / "ma" / "inputs" / "digits.json").read_text())["data"]
    assert flags["input-data"] == str(tmp_path / "ma" / "inputs" / "digits.json")
    assert len(entries) == 4 and entries[0]["image"]["shape"] == [64]

    # Model Analyzer's directories: beside the config, the checkpoint's parent made (Model Analyzer refuses it missing)
    results = tmp_path / "ma" / "results"
    assert data["export_path"] == str(results)
    assert data["output_model_repository_path"] == str(results / "output_model_repository")
    checkpoint = results / "checkpoints" / data["checkpoint_directory"].rsplit("/", 1)[1]
    assert data["checkpoint_directory"] == str(checkpoint) and checkpoint.parent.is_dir()


def test_the_configs_model_analyzer_starts_from_are_the_built_ones_with_the_cache_off(repo, tmp_path):
    written = write_config(repo, tmp_path / "ma", perf_analyzer="perf_analyzer")
    model_repository = tmp_path / "ma" / "model_analyzer_configs"
    assert yaml.safe_load(written.path.read_text())["model_repository"] == str(model_repository)
    assert sorted(p.name for p in model_repository.iterdir()) == ["digits"]
    built, profiled = Repository(repo).config("digits"), read_config(model_repository / "digits" / "config.pbtxt")
    built_settings, settings = (loads(c.parameters[PARAMETER].string_value, "digits") for c in (built, profiled))
    assert isinstance(built_settings, PublicSettings) and isinstance(settings, PublicSettings)
    assert built_settings.cache is not None and settings.cache is None
    assert settings.files == built_settings.files and settings.rungs == built_settings.rungs
    assert not profiled.HasField("response_cache")
    for c in (built, profiled):
        del c.parameters[PARAMETER]
        c.ClearField("response_cache")
    assert profiled == built  # version, batching, preferred sizes, instances, I/O: as built


def test_asking_for_the_built_config_alone_sweeps_no_config_and_a_rebuild_gets_a_fresh_checkpoint(repo, tmp_path):
    built_only = Sweep(concurrency=(1,), instances=(1,), delays_us=(0,))
    first = yaml.safe_load(write_config(repo, tmp_path / "ma", sweep=built_only, perf_analyzer="pa").path.read_text())
    assert "model_config_parameters" not in first["profile_models"]["digits"]  # Model Analyzer's default config only
    again = yaml.safe_load(write_config(repo, tmp_path / "ma", sweep=built_only, perf_analyzer="pa").path.read_text())
    assert again["checkpoint_directory"] == first["checkpoint_directory"]  # the same configs resume their checkpoint
    rebuilt = planned_repository(tmp_path / "model_repository", _digits(), version=2)
    after = yaml.safe_load(write_config(rebuilt, tmp_path / "ma", sweep=built_only, perf_analyzer="pa").path.read_text())
    assert after["checkpoint_directory"] != first["checkpoint_directory"]  # never the old build's measurements


def test_refusals_name_the_cause_and_write_nothing(repo, tmp_path):
    with pytest.raises(ModelAnalyzerConfigError, match=r"'digits': max_batch_size 16; none of the client batch sizes \[32, 64\]"):
        write_config(repo, tmp_path / "ma", sweep=Sweep(batch_sizes=(32, 64)), perf_analyzer="pa")
    assert not (tmp_path / "ma").exists()
    with pytest.raises(ModelAnalyzerConfigError, match="inside the repository"):
        write_config(repo, repo / "ma", perf_analyzer="pa")
    with pytest.raises(ModelAnalyzerConfigError, match="inside the repository"):
        write_config(repo, repo / "digits", perf_analyzer="pa")
    assert not (repo / "ma").exists()


def test_an_ensemble_public_model_is_left_out_and_its_steps_can_be_named(tmp_path):
    repo = planned_repository(tmp_path / "model_repository", _digits(topology="ensemble"))
    with pytest.raises(ModelAnalyzerConfigError, match="every public model is an ensemble"):
        write_config(repo, tmp_path / "ma", perf_analyzer="pa")
    with pytest.raises(ModelAnalyzerConfigError, match="'digits' is an ensemble"):
        write_config(repo, tmp_path / "ma", models=["digits"], perf_analyzer="pa")
    written = write_config(repo, tmp_path / "ma", models=["digits_ort"], perf_analyzer="pa")
    assert list(yaml.safe_load(written.path.read_text())["profile_models"]) == ["digits_ort"]


def test_the_default_perf_analyzer_is_a_script_running_the_bundled_one_with_its_library_path(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(mac.analyzer, "find_binary", lambda: tmp_path / "tools dir" / "perf_analyzer")
    monkeypatch.setattr(mac.analyzer, "library_dir", lambda: tmp_path / "lib")
    written = write_config(repo, tmp_path / "ma")
    script = tmp_path / "ma" / "perf_analyzer"
    assert yaml.safe_load(written.path.read_text())["perf_analyzer_path"] == str(script)
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f"LD_LIBRARY_PATH={tmp_path}/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" in text
    assert f"exec '{tmp_path}/tools dir/perf_analyzer' \"$@\"" in text


def test_the_command_writes_beside_the_repository_and_prints_how_to_run_it(repo, tmp_path):
    result = CliRunner().invoke(
        app,
        ["model-analyzer-config", "--repo", str(repo), "--perf-analyzer", "pa", "--url", "h:9001", "--concurrency", "1,2,4"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "model_repository.model_analyzer" / "config.yaml"
    assert f"model-analyzer profile -f {path}" in result.output
    data = yaml.safe_load(path.read_text())
    assert data["triton_grpc_endpoint"] == "h:9001" and data["profile_models"]["digits"]["parameters"]["concurrency"] == [1, 2, 4]
    refused = CliRunner().invoke(app, ["model-analyzer-config", "--repo", str(repo), "--instances", "0"], env={"COLUMNS": "250"})
    assert refused.exit_code == 2 and "Invalid value for '--instances'" in refused.output
