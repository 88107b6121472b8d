"""The source table: every `source.kind` is one registered module whose options validate the spec's `source`;
an unknown kind lists the known ones, a field the kind does not take is an error naming it (nothing loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import DIGITS

from tritonforge.builder.sources import SOURCES, source_of
from tritonforge.errors import SpecError
from tritonforge.spec import load_spec, parse_spec
from tritonforge.spec.registry import SOURCE_KINDS, KindRegistry

VALID = {
    "pytorch": {"kind": "pytorch", "factory": "mod:make", "factory_args": {"n": 2}, "state_dict": "w.pt"},
    "torchscript": {"kind": "torchscript", "path": "m.ts"},
    "exported_program": {"kind": "exported_program", "path": "m.pt2"},
    "onnx": {"kind": "onnx", "path": "m.onnx"},
    "sklearn": {"kind": "sklearn", "path": "m.joblib"},
}


def _with_source(source: dict) -> dict:
    data = yaml.safe_load((DIGITS / "spec.yaml").read_text())
    data["source"] = source
    return data


def _error(source: dict) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(_with_source(source), source="my.yaml")
    return str(err.value)


def test_every_kind_is_registered_once_with_its_module():
    assert SOURCE_KINDS.kinds == list(VALID) == list(SOURCES)
    for kind, source in SOURCES.items():
        assert source.kind == kind and SOURCE_KINDS[kind] is source.Options


@pytest.mark.parametrize("kind", list(VALID))
def test_each_kind_validates_as_its_own_options(kind):
    spec = parse_spec(_with_source(VALID[kind]), source="my.yaml")
    assert spec.source.kind == kind
    assert isinstance(spec.source, SOURCES[kind].Options) and source_of(spec) is SOURCES[kind]
    assert {f"source.{k}" for k in spec.source.file_fields()} == {
        f"source.{k}" for k in ("state_dict", "path") if k in VALID[kind]
    }
    assert all(isinstance(p, Path) for p in spec.source.file_fields().values())


def test_an_unknown_kind_lists_the_known_ones():
    text = _error({"kind": "keras", "path": "m.h5"})
    assert "field 'source.kind'" in text and "'keras'" in text
    assert all(f"'{kind}'" in text for kind in VALID)


def test_a_missing_kind_is_an_error_on_kind():
    assert "field 'source.kind'" in _error({"path": "m.onnx"})


@pytest.mark.parametrize(
    "source, field",
    [
        ({"kind": "pytorch", "factory": "mod:make", "path": "m.pt"}, "path"),
        ({"kind": "onnx", "path": "m.onnx", "factory": "mod:make"}, "factory"),
        ({"kind": "torchscript", "path": "m.ts", "state_dict": "w.pt"}, "state_dict"),
        ({"kind": "sklearn", "path": "m.joblib", "state_dict": "w.pt"}, "state_dict"),
    ],
)
def test_a_field_the_kind_does_not_take_is_an_error_naming_it(source, field):
    text = _error(source)
    assert f"field 'source.{field}': Extra inputs are not permitted" in text
    assert f"source kind '{source['kind']}' takes" in text


@pytest.mark.parametrize(
    "source, field, fragment",
    [
        ({"kind": "pytorch"}, "source", "needs 'factory"),
        ({"kind": "pytorch", "factory": "no ref"}, "source", "must be 'module:callable'"),
        ({"kind": "onnx"}, "source.path", "Field required"),
        ({"kind": "sklearn", "path": "m.joblib", "factory": "mod:make"}, "source", "exactly one of"),
    ],
)
def test_each_kind_keeps_its_own_field_rules(source, field, fragment):
    text = _error(source)
    assert f"field '{field}'" in text and fragment in text


def test_a_missing_source_file_names_its_field(tmp_path):
    data = _with_source({"kind": "onnx", "path": "nowhere/m.onnx"})
    data["validation"]["data"] = {"npz": str(DIGITS / "spec.yaml")}  # any existing file
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"field 'source.path': file not found: .*nowhere/m.onnx"):
        load_spec(path)


def test_a_kind_registered_twice_is_refused():
    registry: KindRegistry = KindRegistry("source")
    registry.register(SOURCES["onnx"].Options)
    registry.register(SOURCES["onnx"].Options)  # the same model again is harmless

    class Other(SOURCES["onnx"].Options):  # type: ignore[name-defined,misc]
        pass

    with pytest.raises(ValueError, match="source kind 'onnx' is registered twice"):
        registry.register(Other)
