"""The runtime table: open_runtime and the Triton model layout dispatch through it, one registration per name,
and each runtime lays its variant out in its own backend with its own file names (no process, no GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.builder.runtimes import RUNTIMES, Layout, Opened, Runtime, RuntimeRegistry, open_runtime
from tritonforge.builder.runtimes.onnxruntime import OnnxRuntime
from tritonforge.builder.serving_graph import scheduling, variant_model
from tritonforge.builder.variants import VariantOutcome
from tritonforge.spec import load_spec


class _Doubling(Runtime):
    name = "doubling"
    backend = "python"
    platform = ""
    instance_kind = "cpu"

    def open(self, path: Path, input_names: list[str], output_names: list[str], threads: int = 0) -> Opened:
        return Opened(lambda b: {output_names[0]: b[input_names[0]] * 2}, "CPU (test)", "doubling")

    def layout(self, name: str, inputs: object, outputs: object, scheduling: object, path: Path) -> Layout:  # type: ignore[override]
        return Layout(mc.ModelConfig(name=name, backend=self.backend), {"model.bin": path})


def test_every_runtime_a_converter_names_is_registered():
    from tritonforge.builder.converters import CONVERTERS

    assert RUNTIMES.names == ["onnxruntime", "tensorrt", "pytorch"]
    assert {c.runtime for c in CONVERTERS.values()} <= set(RUNTIMES.names)


def test_a_name_registered_twice_is_refused():
    registry = RuntimeRegistry()
    registry.register(OnnxRuntime())
    with pytest.raises(ValueError, match="runtime 'onnxruntime' is registered twice"):
        registry.register(OnnxRuntime())
    with pytest.raises(ValueError, match="registered twice"):
        RUNTIMES.register(OnnxRuntime())


def test_an_unknown_runtime_lists_the_known():
    with pytest.raises(ValueError, match=r"unknown runtime 'tflite' \(known: onnxruntime, tensorrt, pytorch\)"):
        RUNTIMES["tflite"]
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        open_runtime("tflite", Path("m"), ["x"], ["y"])


def test_open_runtime_dispatches_by_name_warms_and_times(monkeypatch, tmp_path):
    registry = RuntimeRegistry()
    registry.register(_Doubling())
    monkeypatch.setattr("tritonforge.builder.runtimes.RUNTIMES", registry)
    opened = open_runtime("doubling", tmp_path / "m", ["x"], ["y"], warm_batch={"x": np.ones(2)})
    assert opened.device == "CPU (test)" and opened.runtime_label == "doubling" and opened.memory_mb >= 0
    np.testing.assert_array_equal(opened.run({"x": np.arange(3)})["y"], [0, 2, 4])
    opened.timer.prepare("b", {"x": np.ones(1)})
    seen = opened.timer.window("b", min_runs=3, window_s=0.0)
    assert len(seen) >= 3 and all(s >= 0 for s in seen)


def _outcome(runtime: str, kind: str, file: Path) -> VariantOutcome:
    return VariantOutcome(
        id=kind, kind=kind, runtime=runtime, precision="fp16", options={}, published_as=f"digits_{kind}", file=str(file)
    )


@pytest.mark.parametrize(
    "runtime, kind, backend, platform, instance_kind, file",
    [
        ("onnxruntime", "onnx_fp16", "onnxruntime", "", mc.ModelInstanceGroup.KIND_AUTO, "model.onnx"),
        ("pytorch", "torch_trt_fp16", "", "pytorch_libtorch", mc.ModelInstanceGroup.KIND_GPU, "model.pt"),
    ],
)
def test_a_runtimes_layout_gives_its_config_and_file_names(
    tmp_path, digits_spec, runtime, kind, backend, platform, instance_kind, file
):
    spec = load_spec(digits_spec)
    built = tmp_path / "built"
    built.write_bytes(b"bytes")
    model = variant_model(spec, _outcome(runtime, kind, built), 2)
    assert model.config.backend == backend and model.config.platform == platform
    assert model.config.instance_group[0].kind == instance_kind
    assert model.files == {file: built} and model.role.file == file and model.role.runtime == runtime
    assert model.role.order == 2 and model.name == f"digits_{kind}"
    declared = RUNTIMES[runtime]
    assert backend in ("", declared.backend) and platform in ("", declared.platform)
    if runtime == "onnxruntime":
        assert model.config.default_model_filename == "model.onnx"


def test_a_tensorrt_plan_is_named_for_its_compute_capability(tmp_path, digits_spec, monkeypatch):
    from tritonforge import hardware

    monkeypatch.setattr(hardware, "gpu_info", lambda: hardware.GpuInfo(name="test", compute_capability="8.9"))
    spec = load_spec(digits_spec)
    layout = RUNTIMES["tensorrt"].layout("m", spec.inputs, spec.outputs, scheduling(spec, "gpu"), tmp_path / "p")
    assert layout.files == {"model_sm89.plan": tmp_path / "p"} and layout.file == "model_sm89.plan"
    assert dict(layout.config.cc_model_filenames) == {"8.9": "model_sm89.plan"}
    assert layout.config.platform == RUNTIMES["tensorrt"].platform


def test_variant_model_refuses_a_runtime_without_a_layout(tmp_path, digits_spec):
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        variant_model(load_spec(digits_spec), _outcome("tflite", "x", tmp_path / "m"), 0)
