"""`tritonforge init`: a spec read from the model, which then builds after supplying the validation data."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tritonforge.build.scaffold import write_spec
from tritonforge.build.spec import load_spec
from tritonforge.errors import SpecError

from helpers import DIGITS, ROOT


@pytest.fixture(scope="module")
def two_inputs_onnx(tmp_path_factory):
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "models"))
    import two_inputs

    return two_inputs, two_inputs.export(tmp_path_factory.mktemp("onnx") / "two_inputs.onnx")


def test_init_reads_names_dtypes_dynamic_dims_and_the_embedding_range(two_inputs_onnx, tmp_path):
    _module, onnx_file = two_inputs_onnx
    spec_path, _sig = write_spec(str(onnx_file), tmp_path / "spec.yaml")
    text = spec_path.read_text()
    data = yaml.safe_load(text)
    assert data["source"]["kind"] == "onnx"
    assert (spec_path.parent / data["source"]["path"]).resolve() == onnx_file.resolve()  # relative to the spec
    assert [(t["name"], t["dtype"], t["shape"]) for t in data["inputs"]] == [("ids", "int64", [-1]),
                                                                              ("features", "float32", [3])]
    assert data["inputs"][0]["range"] == [0, 99] and "rows of" in text  # the embedding table's 100 rows
    assert data["inputs"][0]["dim_names"] == ["length"]  # the graph's own name for the dynamic dim
    assert [(t["name"], t["shape"]) for t in data["outputs"]] == [("scores", [4]), ("value", [1])]
    assert data["validation"]["data"] == {"npz": "validation.npz"} and "# supply it" in text
    assert data["max_batch_size"] >= 1
    with pytest.raises(SpecError, match="file not found"):  # the one thing left to the user
        load_spec(spec_path)


def test_init_never_overwrites_and_checks_samples_against_the_model(two_inputs_onnx, tmp_path):
    module, onnx_file = two_inputs_onnx
    (tmp_path / "spec.yaml").write_text("mine\n")
    with pytest.raises(SpecError, match="never overwrites"):
        write_spec(str(onnx_file), tmp_path / "spec.yaml")
    assert (tmp_path / "spec.yaml").read_text() == "mine\n"
    np.savez(tmp_path / "bad.npz", ids=np.zeros((4, 5), np.int64))
    with pytest.raises(SpecError, match=r"no array for input\(s\) \['features'\]"):
        write_spec(str(onnx_file), tmp_path / "s2.yaml", samples=tmp_path / "bad.npz")
    np.savez(tmp_path / "good.npz", **module.samples(16, 9))
    spec_path, _ = write_spec(str(onnx_file), tmp_path / "s3.yaml", samples=tmp_path / "good.npz")
    spec = load_spec(spec_path)  # builds as it is: the samples are its validation data
    assert spec.validation.data.npz.name == "good.npz"


def test_init_from_a_factory_needs_an_example_and_reads_the_signature_from_it(tmp_path, digits_spec):
    with pytest.raises(SpecError, match="carries no signature: give --samples"):
        write_spec("digits_model:build_model", tmp_path / "spec.yaml", base=DIGITS)
    data = np.load(DIGITS / "artifacts" / "validation.npz")
    np.savez(tmp_path / "images.npz", image=data["image"][:8])
    spec_path, sig = write_spec("digits_model:build_model", tmp_path / "spec.yaml", samples=tmp_path / "images.npz",
                                base=DIGITS)
    parsed = yaml.safe_load(spec_path.read_text())
    assert parsed["source"] == {"kind": "pytorch", "factory": "digits_model:build_model"}
    assert parsed["inputs"] == [{"name": "image", "dtype": "float32", "shape": [64]}]
    assert parsed["outputs"] == [{"name": "output", "dtype": "float32", "shape": [10]}]
    assert any("mark the dims that vary" in n for n in sig.notes)
