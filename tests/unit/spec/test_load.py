"""The build spec: valid specs load; invalid ones fail with messages naming the file and the field."""

from __future__ import annotations

import pytest
import yaml
from helpers import DIGITS

import tritonforge.builder  # noqa: F401 - registers the source and variant kinds a spec validates against
from tritonforge.errors import SpecError
from tritonforge.spec import load_spec, parse_spec


def _base() -> dict:
    return yaml.safe_load((DIGITS / "spec.yaml").read_text())


def test_example_spec_loads(digits_spec):
    spec = load_spec(digits_spec)
    assert spec.name == "digits"
    assert spec.inputs[0].shape == [64]
    assert spec.resolve(spec.source.state_dict).is_file()
    assert spec.serving.dynamic_batching.max_queue_delay_us == 0 and spec.serving.dynamic_batching.enabled


@pytest.mark.parametrize(
    "mutate, field, fragment",
    [
        (lambda d: d["source"].update(kind="keras"), "source.kind", "'pytorch'"),
        (lambda d: d["inputs"][0].update(dtype="float33"), "inputs[0].dtype", "float33"),
        (lambda d: d["inputs"][0].update(shape=[0]), "inputs[0].shape", "positive or -1"),
        (lambda d: d.update(max_batch_size="many"), "max_batch_size", "integer"),
        (lambda d: d.update(name="bad name!"), "name", "must match"),
        (lambda d: d.pop("validation"), "validation", "Field required"),
        (lambda d: d["source"].pop("factory"), "source", "needs 'factory"),
        (lambda d: d.update(surprise=1), "surprise", "Extra inputs"),
        (
            lambda d: d["serving"]["dynamic_batching"].update(preferred_batch_sizes=[128]),
            "(top level)",
            "outside 1..max_batch_size",
        ),
        (lambda d: d["outputs"][0].update(name="image"), "(top level)", "unique"),
    ],
)
def test_invalid_spec_names_the_field(mutate, field, fragment):
    data = _base()
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data, source="my.yaml")
    text = str(err.value)
    assert text.startswith("my.yaml: invalid build spec")
    assert f"field '{field}'" in text
    assert fragment in text


def test_missing_file_names_field_and_path(tmp_path, digits_spec):
    data = _base()
    data["source"]["state_dict"] = "nowhere/weights.pt"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"field 'source.state_dict': file not found: .*nowhere/weights.pt"):
        load_spec(path)


def test_not_yaml_and_not_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(bad)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "absent.yaml")


def test_content_hash_is_stable_and_sensitive():
    a = parse_spec(_base())
    b = parse_spec(_base())
    assert a.content_hash() == b.content_hash()
    changed = _base()
    changed["serving"]["instance_count"] = 2
    assert parse_spec(changed).content_hash() != a.content_hash()


@pytest.mark.parametrize(
    "written, read",
    [
        ("TYPE_FP32", "float32"),
        ("FP32", "float32"),
        ("fp32", "float32"),
        ("TYPE_FP16", "float16"),
        ("INT64", "int64"),
        ("BYTES", "string"),
        ("TYPE_STRING", "string"),
        ("half", "float16"),
        ("float32", "float32"),
    ],
)
def test_triton_dtype_spellings_read_as_the_spec_names(written, read):
    data = _base()
    data["inputs"][0]["dtype"] = written
    spec = parse_spec(data)
    assert spec.inputs[0].dtype == read
    assert spec.content_hash() == parse_spec(_base() | {"inputs": [data["inputs"][0] | {"dtype": read}]}).content_hash()


@pytest.mark.parametrize("written, hint", [("float33", "did you mean 'float32'?"), ("int", "did you mean 'int32' or 'int64'?")])
def test_an_unknown_dtype_says_which_name_is_closest(written, hint):
    data = _base()
    data["inputs"][0]["dtype"] = written
    with pytest.raises(SpecError) as err:
        parse_spec(data, source="my.yaml")
    assert "field 'inputs[0].dtype'" in str(err.value) and hint in str(err.value)


@pytest.mark.parametrize(
    "mutate, field, hint",
    [
        (
            lambda d: d["serving"]["dynamic_batching"].update(max_queue_delay=100),
            "serving.dynamic_batching.max_queue_delay",
            "max_queue_delay_us",
        ),
        (lambda d: d.update(maxbatch_size=8), "maxbatch_size", "max_batch_size"),
        (lambda d: d["inputs"][0].update(dtyp="float32"), "inputs[0].dtyp", "dtype"),
        (lambda d: d["source"].update(statedict="w.pt"), "source.statedict", "state_dict"),
        (
            lambda d: d["variants"].__setitem__(0, {"kind": "onnx_int8_dynamic", "per_chanel": True}),
            "variants[0].per_chanel",
            "per_channel",
        ),
        (lambda d: d["gate"].update(outputs={"logits": {"min_cosin": 0.9}}), "gate.outputs.logits.min_cosin", "min_cosine"),
    ],
)
def test_a_misspelled_field_says_which_field_is_closest(mutate, field, hint):
    data = _base()
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data, source="my.yaml")
    line = next(line for line in str(err.value).splitlines() if f"field '{field}'" in line)
    assert f"did you mean '{hint}'?" in line


def test_a_field_like_no_other_gets_no_guess():
    data = _base()
    data["surprise"] = 1
    with pytest.raises(SpecError) as err:
        parse_spec(data, source="my.yaml")
    assert "did you mean" not in str(err.value)
