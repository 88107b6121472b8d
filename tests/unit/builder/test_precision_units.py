"""Units of the precision machinery: gate decisions, timing windows, INT8 search grid, TensorRT configs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DIGITS
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.builder.converters import CONVERTERS
from tritonforge.builder.data import Dataset
from tritonforge.builder.gate import evaluate
from tritonforge.builder.int8_search import candidates
from tritonforge.builder.timing import measure, timing_input
from tritonforge.builder.verify import Comparison
from tritonforge.serving.agreement import OutputMetrics
from tritonforge.spec import GateSpec, Int8SearchSpec, TimingSpec, load_spec


def _metrics(name, cosine=1.0, top1=None, nonfinite=0, max_abs=0.0, mean_rel=0.0):
    return OutputMetrics(name, 10, max_abs, 0.0, mean_rel, 0.0, cosine, cosine, top1, top1 is not None, nonfinite)


def test_gate_on_embeddings_uses_cosine():
    comp = Comparison({"e": _metrics("e", cosine=0.985)}, None, 1e-4, 1e-3)
    result = evaluate(comp, GateSpec(min_cosine=0.99), {"e": "embedding"})
    assert not result.passed
    assert result.failures == ["min cosine 0.9850 (needs >= 0.99): FAILS by 0.005"]
    assert evaluate(comp, GateSpec(min_cosine=0.98), {"e": "embedding"}).passed


def test_gate_on_class_scores_uses_top1_and_accuracy_not_cosine():
    comp = Comparison({"logits": _metrics("logits", cosine=0.5, top1=0.995)}, {"reference": 0.97, "candidate": 0.955}, 1e-4, 1e-3)
    result = evaluate(comp, GateSpec(), {"logits": "class_scores"})
    names = {c.name: c for c in result.checks}
    assert "min cosine" not in names
    assert names["top-1 agreement"].passed
    assert not names["accuracy drop"].passed and names["accuracy drop"].value == pytest.approx(0.015)


def test_gate_rejects_nonfinite_and_max_abs():
    comp = Comparison({"e": _metrics("e", nonfinite=3, max_abs=2.0)}, None, 1e-4, 1e-3)
    result = evaluate(comp, GateSpec(max_abs=1.0), {"e": "embedding"})
    assert {c.name for c in result.checks if not c.passed} == {"non-finite values", "max abs"}


def test_each_output_is_gated_by_what_it_is_with_its_own_thresholds():
    """A multi-output model: class scores whose top-1 holds, and a regression head 3.6 off on average. Judged by
    cosine and top-1 alone (the old global gate) it passed; the regression's own check now fails it."""
    from tritonforge.spec import OutputGateSpec

    comp = Comparison(
        {
            "logits": _metrics("logits", cosine=0.999, top1=1.0, max_abs=3.62),
            "price": _metrics("price", cosine=1.0, max_abs=3.62, mean_rel=0.31),
        },
        None,
        1e-4,
        1e-3,
    )
    kinds = {"logits": "class_scores", "price": "regression"}
    result = evaluate(comp, GateSpec(), kinds)
    assert result.failures == ["price: mean rel error 0.3100 (needs <= 0.05): FAILS by 0.26"]
    tolerant = GateSpec(outputs={"price": OutputGateSpec(max_mean_rel=0.5), "logits": OutputGateSpec(max_abs=1.0)})
    assert [c.name for c in evaluate(comp, tolerant, kinds).checks if not c.passed] == ["logits: max abs"]


def test_output_kinds_default_by_what_the_output_is():
    from tritonforge.spec import parse_spec

    data = {
        "name": "m",
        "source": {"kind": "onnx", "path": "m.onnx"},
        "max_batch_size": 4,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [8]}],
        "outputs": [
            {"name": "logits", "dtype": "float32", "shape": [10]},
            {"name": "emb", "dtype": "float32", "shape": [64]},
            {"name": "score", "dtype": "float32", "shape": [1]},
        ],
        "validation": {"data": {"npz": "v.npz", "labels": "y"}},
    }
    assert parse_spec(data).output_kinds == {"logits": "class_scores", "emb": "embedding", "score": "regression"}
    data["gate"] = {"outputs": {"emb": {"kind": "regression"}}}
    assert parse_spec(data).output_kinds["emb"] == "regression"


def test_timing_windows_until_stable_and_interleaved():
    calls: list[str] = []

    def runner(name):
        def run(batch):
            calls.append(name)
            return sum(range(2000))

        return run

    settings = TimingSpec(warmup_runs=1, window_s=0.01, min_runs_per_window=2, stable_pct=1000, stable_windows=2, max_windows=5)
    inputs = {1: {"x": np.zeros((1, 4))}, 8: {"x": np.zeros((8, 4))}}
    stats = measure({"a": runner("a"), "b": runner("b")}, inputs, settings)
    for rid in ("a", "b"):
        for b in (1, 8):
            s = stats[rid][b]
            assert s.stable and s.windows == 2 and s.runs >= 4
            assert 0 < s.p50_ms <= s.p95_ms and s.throughput == pytest.approx(b / (s.mean_ms / 1000))
    assert "a" in calls and "b" in calls
    first_b = calls.index("b")
    assert "a" in calls[first_b:]  # windows alternate between runners


def test_timing_input_has_exact_batch_size(digits_spec):
    spec = load_spec(digits_spec)
    data = Dataset([{"image": np.arange(5 * 64, dtype=np.float32).reshape(5, 64)}])
    batch = timing_input(data, 12)
    assert batch["image"].shape == (12, 64)
    np.testing.assert_array_equal(batch["image"][5], batch["image"][0])
    assert spec.timing_batch_sizes == [1, 64]


def test_int8_search_grid():
    grid = candidates(
        Int8SearchSpec(enabled=True, methods=["dynamic", "entropy"], per_channel=[False, True], exclude_top=[0, 2, 4]),
        ranked=["n1", "n2", "n3"],
    )
    ids = [v.variant_id for v in grid]
    assert ids[:3] == ["int8_dyn_pt_x0", "int8_dyn_pt_x2", "int8_dyn_pt_x3"]  # only 3 nodes to exclude
    assert len(ids) == len(set(ids)) == 12
    entropy = next(v for v in grid if v.variant_id == "int8_entropy_pc_x2")
    assert entropy.kind == "onnx_int8_qdq" and entropy.calibration_method == "entropy"
    assert entropy.exclude_nodes == ["n1", "n2"] and entropy.per_channel
    assert candidates(Int8SearchSpec(enabled=True, exclude_top=[0, 4]), ranked=[]) == candidates(
        Int8SearchSpec(enabled=True, exclude_top=[0]), ranked=[]
    )


def test_the_spec_s_variant_entries_are_the_converters_options():
    """One registry line per kind: its entry in a spec is that converter's Options, and only its fields."""
    from pydantic import ValidationError

    from tritonforge.builder.converters import variant_spec

    for kind, converter in CONVERTERS.items():
        assert type(variant_spec(kind)) is converter.Options
    assert {c.runtime for c in CONVERTERS.values()} == {"onnxruntime", "tensorrt", "pytorch"}
    assert variant_spec("onnx_int8_qdq", calibration_method="entropy").calibration_method == "entropy"
    with pytest.raises(ValidationError, match="keep_io_types"):
        variant_spec("onnx_int8_dynamic", keep_io_types=False)  # an FP16 option on an INT8 kind
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        variant_spec("onnx_int4")
    assert [k for k, c in CONVERTERS.items() if c.needs_calibration] == ["onnx_int8_qdq", "trt_int8"]
    assert [k for k, c in CONVERTERS.items() if c.needs_gpu] == ["trt_fp16", "trt_int8", "torch_trt_fp16"]


def test_tensorrt_model_config_on_cpu(tmp_path, digits_spec):
    """The config a TensorRT plan is served with, generated and parsed back without a GPU."""
    from tritonforge.builder.serving_graph import variant_model
    from tritonforge.builder.variants import VariantOutcome
    from tritonforge.repository.config import read_config

    spec = load_spec(digits_spec)
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"plan bytes")
    outcome = VariantOutcome(
        id="trt_fp16",
        kind="trt_fp16",
        runtime="tensorrt",
        precision="fp16",
        options={},
        published_as="digits_trt_fp16",
        file=str(plan),
    )
    model = variant_model(spec, outcome, 0)
    model.write(tmp_path / "digits_trt_fp16", 3)
    cfg = read_config(tmp_path / "digits_trt_fp16" / "config.pbtxt")
    assert list(cfg.version_policy.specific.versions) == [3]
    assert cfg.platform == "tensorrt_plan"
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert len(cfg.cc_model_filenames) == 1
    filename = next(iter(cfg.cc_model_filenames.values()))
    assert (tmp_path / "digits_trt_fp16" / "3" / filename).read_bytes() == b"plan bytes"
    assert cfg.max_batch_size == 64 and cfg.HasField("dynamic_batching")
    assert [i.name for i in cfg.input] == ["image"]


def test_fp16_variant_without_io_casts_declares_half_io(tmp_path, digits_spec):
    from tritonforge.builder.serving_graph import variant_io
    from tritonforge.builder.variants import VariantOutcome

    spec = load_spec(digits_spec)
    o = VariantOutcome(id="h", kind="onnx_fp16", runtime="onnxruntime", precision="fp16", options={"keep_io_types": False})
    inputs, outputs = variant_io(spec, o)
    assert inputs[0].dtype == "float16" and outputs[0].dtype == "float16"


def test_profile_shapes_cover_batch_and_dynamic_dims():
    from tritonforge.builder.converters import variant_spec
    from tritonforge.builder.converters.onnx2trt import observed_dims, profile_shapes
    from tritonforge.spec import load_spec

    spec = load_spec(DIGITS.parent / "minilm" / "spec.yaml")
    data = Dataset(
        [
            {"input_ids": np.ones((4, 12), np.int64), "attention_mask": np.ones((4, 12), np.int64)},
            {"input_ids": np.ones((2, 30), np.int64), "attention_mask": np.ones((2, 30), np.int64)},
        ]
    )
    validation = Dataset([{"input_ids": np.ones((3, 40), np.int64), "attention_mask": np.ones((3, 40), np.int64)}])
    shapes = profile_shapes(spec, variant_spec("trt_fp16", opt_batch_size=16), observed_dims([validation, data]))
    # tuned for the longest input seen; accepts up to the tokenizer's max_length (its 128 bucket), so a long
    # text never fails on the plan and trips the router's breaker
    assert spec.preprocess.max_length == 128
    assert shapes["input_ids"] == ((1, 1), (16, 40), (64, 128))
    assert observed_dims([None, data])["input_ids"][1].tolist() == [30]  # no validation data: calibration only
    digits = load_spec(DIGITS / "spec.yaml")  # no tokenizer, fixed item shape
    assert profile_shapes(digits, variant_spec("trt_fp16"), {})["image"] == ((1, 64), (32, 64), (64, 64))


def test_build_fingerprint_sees_the_gpu_model_not_its_free_memory():
    """On the lent H100 every second build rebuilt: free GPU memory had gone into the fingerprint."""
    from tritonforge.hardware import GpuInfo

    a = GpuInfo(
        name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        memory_total_mb=81559,
        memory_free_mb=81079,
        driver="580.159.04",
        count=1,
    )
    b = GpuInfo(**{**a.to_dict(), "memory_free_mb": 79811})
    assert a.identity() == b.identity()
    assert a.identity() != GpuInfo(**{**a.to_dict(), "compute_capability": "8.0"}).identity()
    assert a.identity() != GpuInfo(absent="no CUDA device").identity()


def test_int8_preprocessing_drops_value_info_of_weights(tmp_path):
    """torch.onnx describes each weight in value_info; ONNX Runtime's quantizer transposes a Gemm's B without
    updating it, and onnx 1.23 then refuses the model (onnx_int8_dynamic failed so on the lent H100 machine)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tritonforge.builder.converters.int8_common import preprocessed

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 128])],
        [w],
        value_info=[helper.make_tensor_value_info("w", TensorProto.FLOAT, [128, 64])],
    )
    src = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    out = preprocessed(src, tmp_path, [])
    model = onnx.load(str(out))
    assert "w" in {i.name for i in model.graph.initializer}
    assert "w" not in {v.name for v in model.graph.value_info}
