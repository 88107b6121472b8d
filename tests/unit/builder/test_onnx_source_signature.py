"""An ONNX source declares its signature: a spec that disagrees with it (a dtype, a name) is refused when the build
reads its inputs, naming the spec's field, the ONNX file and the tensor, before any data is read or export runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from tritonforge.builder.inputs import read_inputs
from tritonforge.errors import SpecError


def _write(tmp_path, input_dtype: str, input_name: str = "x"):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    np.savez(tmp_path / "v.npz", x=np.zeros((4, 4), np.float32))
    spec = {
        "name": "m",
        "source": {"kind": "onnx", "path": "m.onnx"},
        "max_batch_size": 4,
        "inputs": [{"name": input_name, "dtype": input_dtype, "shape": [4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}],
        "validation": {"data": {"npz": "v.npz"}},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "spec.yaml"


def test_a_dtype_the_onnx_file_does_not_declare_names_the_field_the_file_and_the_tensor(tmp_path):
    spec = _write(tmp_path, "float16")
    with pytest.raises(SpecError) as err:
        read_inputs(spec, None)
    text = str(err.value)
    assert f"{spec}: field 'inputs[0].dtype'" in text and str(tmp_path / "m.onnx") in text
    assert "input 'x' as FLOAT" in text and "set dtype: float32" in text


def test_a_name_the_onnx_file_does_not_have_lists_its_names(tmp_path):
    spec = _write(tmp_path, "float32", input_name="image")
    with pytest.raises(SpecError, match=r"field 'inputs\[0\].name': .*m.onnx has no input 'image' \(its inputs: x\)"):
        read_inputs(spec, None)


def test_a_spec_that_agrees_reads(tmp_path):
    assert read_inputs(_write(tmp_path, "FP32"), None).spec.inputs[0].dtype == "float32"


def test_an_exported_graph_of_another_type_names_the_field(tmp_path):
    """Other sources are checked after export, against the exported graph: the message names the field too."""
    from tritonforge.builder.onnx_graph import check_against_spec
    from tritonforge.errors import ExportError
    from tritonforge.spec import load_spec

    spec = load_spec(_write(tmp_path, "float32"))
    model = onnx.load(tmp_path / "m.onnx")
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    with pytest.raises(ExportError, match=r"output 'y': ONNX type DOUBLE, the spec says float32 \(field 'outputs\[0\].dtype'"):
        check_against_spec(model, spec)
