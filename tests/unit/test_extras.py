"""A feature whose package is not installed says which extra brings it, instead of a traceback."""

from __future__ import annotations

import pytest
import tomllib
from helpers import ROOT

from tritonforge.errors import TritonforgeError
from tritonforge.extras import EXTRAS, MissingExtraError, missing, require


def test_a_missing_module_names_the_feature_and_the_extra():
    with pytest.raises(MissingExtraError) as e:
        require("no_such_module_tf", "perf", "the plots")
    assert str(e.value) == (
        "the plots needs no_such_module_tf, which is not installed: tritonforge's [perf] extra brings it "
        "(pip install 'tritonforge[perf]')"
    )
    assert isinstance(e.value, TritonforgeError) and e.value.exit_code == 2  # a user error: the CLI exits 2


def test_the_torch_hint_warns_of_the_cuda_build():
    assert "torch==2.13.0 from PyPI is the CPU one" in missing("no_such_module_tf", "torch", "x")


def test_an_installed_module_is_returned_and_an_unknown_extra_is_a_bug():
    assert require("json", "perf", "x").__name__ == "json" and missing("json", "perf", "x") is None
    with pytest.raises(ValueError, match="not an extra"):
        require("json", "nope", "x")


def test_every_extra_a_user_can_be_told_of_is_in_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) == set(extras) - {"examples", "dev"}


def test_a_broken_import_inside_an_installed_package_is_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "tf_broken_pkg.py").write_text("import no_such_dependency_tf\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_tf"):
        require("tf_broken_pkg", "perf", "x")
