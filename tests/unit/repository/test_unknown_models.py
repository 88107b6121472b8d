"""A model name the repository does not hold: every command that takes one (perf, perf-inputs, report, reload)
fails with one message that names the repository, lists the models it holds and says which is closest, through
one function (Repository.require), never with a missing config.pbtxt's errno."""

from __future__ import annotations

import json
import sys

import pytest

from tritonforge.cli.main import main
from tritonforge.errors import RepositoryError
from tritonforge.repository.build_report import read_report
from tritonforge.repository.manifest import MANIFEST_NAME
from tritonforge.repository.reader import Repository
from tritonforge.server.reload import reload_build

FIELDS = {"tritonforge_version": "0.1.0", "fingerprint": "f", "spec_hash": "s", "inputs": {}, "tools": {}, "version": 1}


@pytest.fixture
def repo(tmp_path):
    """A repository holding the build 'tinycnn' (public model, runner, one rung) and one model of other origin."""
    root = tmp_path / "model_repository"
    roles = {"tinycnn_onnx_fp32": "rung", "tinycnn_ort": "runner", "tinycnn": "public"}
    for model in [*roles, "hand_made"]:
        (root / model / "1").mkdir(parents=True)
        (root / model / "config.pbtxt").write_text(f'name: "{model}"\n')
    manifest = {**FIELDS, "name": "tinycnn", "roles": {m: {"role": r} for m, r in roles.items()}}
    (root / "tinycnn" / MANIFEST_NAME).write_text(json.dumps(manifest))
    return root


def test_require_lists_what_the_repository_holds_and_the_closest_name(repo):
    repository = Repository(repo)
    assert repository.require("tinycnn_ort") == "tinycnn_ort"
    with pytest.raises(RepositoryError) as err:
        repository.require("tinycn")
    text = str(err.value)
    assert "no model named 'tinycn'" in text and str(repo) in text and "did you mean 'tinycnn'?" in text
    assert "public models (what clients call): tinycnn" in text and "hand_made, tinycnn_onnx_fp32, tinycnn_ort" in text


def test_a_public_model_is_asked_for_where_a_build_is_needed(repo):
    repository = Repository(repo)
    with pytest.raises(RepositoryError, match="'tinycnn_onnx_fp32' .* is a model of the build 'tinycnn'.*use 'tinycnn'"):
        repository.require("tinycnn_onnx_fp32", public=True)
    with pytest.raises(RepositoryError, match="not written by tritonforge build"):
        repository.require("hand_made", public=True)


def test_a_missing_or_empty_repository_says_so(tmp_path):
    with pytest.raises(
        RepositoryError, match=r"no model repository at .*elsewhere: name the directory `tritonforge build` wrote \(--repo"
    ):
        Repository(tmp_path / "elsewhere").require("tinycnn")
    with pytest.raises(RepositoryError, match="holds no model; build one first"):
        Repository(tmp_path).require("tinycnn")


def test_every_reader_of_a_model_name_says_the_same(repo):
    """report, perf-inputs (owner), perf (config) and reload (the build's models) go through require."""
    for call in (
        lambda: read_report(repo, "tinycn"),
        lambda: Repository(repo).owner("tinycn"),
        lambda: Repository(repo).config("tinycn"),
        lambda: reload_build("127.0.0.1:1", repo, "tinycn"),
    ):
        with pytest.raises(RepositoryError, match="did you mean 'tinycnn'"):
            call()


@pytest.mark.parametrize(
    "args",
    [["report", "tinycn"], ["perf-inputs", "tinycn"], ["perf", "tinycn", "--url", "127.0.0.1:1"], ["reload", "tinycn"]],
)
def test_commands_exit_2_listing_the_models(repo, args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tritonforge", *args, "--repo", str(repo)])
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean 'tinycnn'?" in err and "public models (what clients call): tinycnn" in err
