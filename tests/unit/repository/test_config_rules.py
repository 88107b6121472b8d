"""Triton's config rules, checked where the local server has no backend for the model: each rule is shown
refusing a config built to break it, and the configs a build writes pass."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.repository import config as cfg
from tritonforge.repository.config_rules import config_problems, onnx_config_problems
from tritonforge.spec import DynamicBatchingSpec, TensorSpec, WarmupSpec

X = TensorSpec(name="x", dtype="float32", shape=[4])
LABEL = TensorSpec(name="label", dtype="int64", shape=[])


def _config(inputs=(X,), outputs=(LABEL,), preferred=(), warmup=(1,)) -> mc.ModelConfig:
    scheduling = cfg.Scheduling(
        8, DynamicBatchingSpec(preferred_batch_sizes=list(preferred)), 1, "auto", WarmupSpec(batch_sizes=list(warmup))
    )
    return cfg.onnxruntime_model("m", list(inputs), list(outputs), scheduling)


def _graph(path, label_type=TensorProto.INT64, batch="n", x_dims=4):
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Cast", ["s"], ["label"], to=label_type)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, x_dims])],
        [helper.make_tensor_value_info("label", label_type, [batch])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def test_a_config_the_build_writes_passes_every_rule(tmp_path):
    config = _config()
    assert config_problems(config) == []
    assert onnx_config_problems(config, _graph(tmp_path / "m.onnx")) == []


def test_an_output_without_dims_is_refused_as_triton_refuses_it():
    config = _config()
    del config.output[0].dims[:]
    config.output[0].ClearField("reshape")
    assert any("output 'label' must specify 'dims'" in p for p in config_problems(config))


def test_warmup_and_preferred_sizes_must_fit_the_config():
    config = _config()
    config.model_warmup[0].inputs["x"].dims[:] = [5]
    config.dynamic_batching.preferred_batch_size.append(16)
    problems = config_problems(config)
    assert any("input 'x' has dims [5], the model takes [4]" in p for p in problems)
    assert any("preferred_batch_size [16] exceeds max_batch_size 8" in p for p in problems)


def test_config_and_graph_must_agree_on_names_types_dims_and_the_batch_dim(tmp_path):
    assert any(
        "TYPE_INT64 in the config, TYPE_INT32 in the graph" in p
        for p in onnx_config_problems(_config(), _graph(tmp_path / "a.onnx", TensorProto.INT32))
    )
    assert any("needs a dynamic first dim" in p for p in onnx_config_problems(_config(), _graph(tmp_path / "b.onnx", batch=1)))
    assert any(
        "do not match the graph's [3]" in p for p in onnx_config_problems(_config(), _graph(tmp_path / "c.onnx", x_dims=3))
    )
    renamed = _config(inputs=(TensorSpec(name="y", dtype="float32", shape=[4]),))
    problems = onnx_config_problems(renamed, _graph(tmp_path / "d.onnx"))
    assert any("input 'y' is not an input of d.onnx" in p for p in problems)
    assert any("the graph's input(s) ['x'] are not in the config" in p for p in problems)
