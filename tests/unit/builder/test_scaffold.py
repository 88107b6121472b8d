"""`tritonforge init`: a spec read from the model, which then builds after supplying the validation data."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers import DIGITS, ROOT

from tritonforge.builder.scaffold import write_spec
from tritonforge.errors import SpecError
from tritonforge.spec import load_spec


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
    assert [(t["name"], t["dtype"], t["shape"]) for t in data["inputs"]] == [("ids", "int64", [-1]), ("features", "float32", [3])]
    assert data["inputs"][0]["range"] == [0, 99] and "rows of" in text  # the embedding table's 100 rows
    assert data["inputs"][0]["dim_names"] == ["length"]  # the graph's own name for the dynamic dim
    assert [(t["name"], t["shape"]) for t in data["outputs"]] == [("scores", [4]), ("value", [1])]
    assert data["validation"]["data"] == {"npz": "validation.npz"} and "# supply it" in text
    assert data["max_batch_size"] >= 1
    assert data["serving"]["cache"] == {"kind": "none"}  # off unless asked for, as Triton's own is
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
    spec_path, sig = write_spec("digits_model:build_model", tmp_path / "spec.yaml", samples=tmp_path / "images.npz", base=DIGITS)
    parsed = yaml.safe_load(spec_path.read_text())
    assert parsed["source"] == {"kind": "pytorch", "factory": "digits_model:build_model"}
    assert parsed["inputs"] == [{"name": "image", "dtype": "float32", "shape": [64]}]
    assert parsed["outputs"] == [{"name": "output", "dtype": "float32", "shape": [10]}]  # a bare tensor
    assert any("exported to ONNX" in n for n in sig.notes)  # the export kept the 64 pixels fixed


MODELS = ROOT / "tests" / "models"


@pytest.fixture(scope="module")
def var_length():
    import sys

    sys.path.insert(0, str(MODELS))
    import var_length

    return var_length


@pytest.fixture(scope="module")
def token_spec(var_length, tmp_path_factory):
    """The token classifier's spec from samples of two lengths: (spec path, its text, the signature)."""
    tmp = tmp_path_factory.mktemp("tokens")
    np.savez(tmp / "tokens.npz", **var_length.token_batches([5, 8]))
    spec_path, sig = write_spec("var_length:token_classifier", tmp / "spec.yaml", samples=tmp / "tokens.npz", base=MODELS)
    return spec_path, spec_path.read_text(), sig


def test_init_from_a_module_reads_a_shared_variable_length_the_output_name_and_the_embedding_range(token_spec, var_length):
    spec_path, text, _sig = token_spec
    data = yaml.safe_load(text)
    assert data["source"] == {"kind": "pytorch", "factory": "var_length:token_classifier"}
    # forward's order, not the file's (attention_mask first): the build passes the inputs positionally
    assert [(t["name"], t["dtype"], t["shape"]) for t in data["inputs"]] == [
        ("input_ids", "int64", [-1]),
        ("attention_mask", "int64", [-1]),
    ]
    assert [t["dim_names"] for t in data["inputs"]] == [["sequence"], ["sequence"]]  # one length, one name
    assert data["inputs"][0]["range"] == [0, var_length.VOCAB - 1]  # the embedding's rows, not the samples' max
    assert "rows of 'embed.weight'" in text
    assert data["outputs"] == [{"name": "logits", "dtype": "float32", "shape": [var_length.CLASSES]}]
    spec = load_spec(spec_path)  # builds as it is: the samples of two lengths are its validation data
    import onnx

    from tritonforge.builder.data import load_dataset
    from tritonforge.builder.exporters.torch2onnx import export
    from tritonforge.builder.sources import load_source

    validation = load_dataset(spec, spec.validation.data, "validation.data")
    assert sorted(b["input_ids"].shape[1] for b in validation) == [5, 8]
    graph = onnx.load(
        str(export(load_source(spec), spec, validation.rebatch(2).batches[0], spec_path.parent / "m.onnx").path)
    ).graph
    assert {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input} == {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
    }  # the build's export agrees


def test_init_writes_a_range_seen_only_in_the_samples_as_a_comment(token_spec):
    spec_path, text, sig = token_spec
    data = yaml.safe_load(text)
    assert "range" not in data["inputs"][1]  # attention_mask indexes no table: its [0, 1] is only what was seen
    assert "    # range: [0, 1]   # seen in the samples; uncomment" in text
    assert any("seen only in the samples" in n and "attention_mask" in n for n in sig.notes)
    uncommented = yaml.safe_load(text.replace("    # range: [0, 1]", "    range: [0, 1]"))
    assert uncommented["inputs"][1]["range"] == [0, 1]  # uncommenting is all it takes
    assert {k: v for k, v in uncommented["inputs"][1].items() if k != "range"} == data["inputs"][1]


def test_init_from_a_module_marks_an_lstm_s_steps_dynamic(var_length, tmp_path):
    np.savez(tmp_path / "steps.npz", **var_length.step_batches([6, 9]))
    spec_path, _ = write_spec("var_length:lstm_regressor", tmp_path / "spec.yaml", samples=tmp_path / "steps.npz", base=MODELS)
    data = yaml.safe_load(spec_path.read_text())
    assert data["inputs"] == [
        {"name": "steps", "dtype": "float32", "shape": [-1, var_length.FEATURES], "dim_names": ["sequence"]}
    ]
    assert data["outputs"] == [{"name": "output", "dtype": "float32", "shape": [1]}]  # a bare tensor


def test_init_from_a_module_that_does_not_export_reads_the_samples_and_its_embeddings(var_length, tmp_path):
    np.savez(tmp_path / "two.npz", **var_length.token_batches([4, 7]))
    spec_path, sig = write_spec("var_length:untraceable", tmp_path / "spec.yaml", samples=tmp_path / "two.npz", base=MODELS)
    data = yaml.safe_load(spec_path.read_text())
    assert [(t["name"], t["shape"], t["dim_names"]) for t in data["inputs"]] == [
        ("input_ids", [-1], ["sequence"]),
        ("attention_mask", [-1], ["sequence"]),
    ]  # lengths that vary together
    assert data["inputs"][0]["range"] == [0, var_length.VOCAB - 1]  # seen feeding the nn.Embedding
    assert data["outputs"][0]["name"] == "logits"
    assert any("did not export" in n and "cannot be exported" in n for n in sig.notes)
    np.savez(tmp_path / "one.npz", **var_length.token_batches([6]))
    spec_path, sig = write_spec("var_length:untraceable", tmp_path / "s1.yaml", samples=tmp_path / "one.npz", base=MODELS)
    assert [t["shape"] for t in yaml.safe_load(spec_path.read_text())["inputs"]] == [[6], [6]]  # nothing says more
    assert any("mark the dims that vary" in n for n in sig.notes)


def test_init_output_names_flag_names_the_outputs(var_length, two_inputs_onnx, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tritonforge.cli.main import app

    np.savez(tmp_path / "steps.npz", **var_length.step_batches([3, 5]))
    monkeypatch.chdir(MODELS)  # where `module:callable` is imported from
    result = CliRunner().invoke(
        app,
        [
            "init",
            "var_length:lstm_regressor",
            "--samples",
            str(tmp_path / "steps.npz"),
            "-o",
            str(tmp_path / "spec.yaml"),
            "--output-names",
            "target",
        ],
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "spec.yaml").read_text())["outputs"][0]["name"] == "target"
    with pytest.raises(SpecError, match=r"--output-names gives 2 name\(s\) for the model's 1 output"):
        write_spec(
            "var_length:lstm_regressor",
            tmp_path / "s2.yaml",
            samples=tmp_path / "steps.npz",
            base=MODELS,
            output_names=["a", "b"],
        )
    with pytest.raises(SpecError, match="an ONNX file's outputs keep"):
        write_spec(str(two_inputs_onnx[1]), tmp_path / "s3.yaml", output_names=["a", "b"])
    assert not (tmp_path / "s2.yaml").exists() and not (tmp_path / "s3.yaml").exists()
