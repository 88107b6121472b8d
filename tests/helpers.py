"""What the tests share besides fixtures: paths, spec copies, metric readers, stand-in rungs."""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY_OUT = "TRITONFORGE_RELIABILITY_OUT"  # where the `reliability` fixture writes its rows
LOAD_SCALE = "TRITONFORGE_LOAD_SCALE"  # `make reliability` runs the load scenarios this many times longer


def scaled(requests: int) -> int:
    """A load test's request count, times $TRITONFORGE_LOAD_SCALE (1 in `make test`)."""
    import os

    return int(requests * float(os.environ.get(LOAD_SCALE, "1")))


DIGITS = ROOT / "examples" / "digits"
MINILM = ROOT / "examples" / "minilm"


def minilm_models(tmp_path: Path, version: int, **serving: object) -> tuple[object, dict[str, object]]:
    """MiniLM's spec (with `serving` overrides) and the model directories a build lays out for it, from two
    stand-in published variants (onnx_fp16 first, onnx_fp32) whose files hold their ids: no build runs."""
    from tritonforge.builder.serving_graph import ServingPlan, plan_models
    from tritonforge.builder.variants import VariantOutcome
    from tritonforge.spec import parse_spec

    data = yaml.safe_load((MINILM / "spec.yaml").read_text())
    data["serving"].update(serving)
    spec = parse_spec(data)
    outcomes = []
    for vid in ("onnx_fp16", "onnx_fp32"):
        (tmp_path / f"{vid}.onnx").write_bytes(vid.encode())
        outcomes.append(
            VariantOutcome(
                vid,
                vid,
                "onnxruntime",
                vid[5:],
                {},
                status="passed",
                published_as=f"minilm_{vid}",
                file=str(tmp_path / f"{vid}.onnx"),
            )
        )
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    plan = ServingPlan(outcomes, outcomes[0], outcomes[1], "v1", tokenizer)
    return spec, {m.name: m for m in plan_models(spec, plan, version=version)}


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (empty if root is missing)."""
    from tritonforge.hashing import sha256_tree

    return sha256_tree(root) if root.exists() else {}


def digits_spec_copy(dest: Path, full: bool = False, **overrides) -> Path:
    """A copy of the digits spec in `dest` (factory module copied, data paths absolute), with top-level overrides.

    Unless `full`, the copy builds only the FP32 variant and skips timing (fast); a nested override is given
    as a dict and replaces that section whole.
    """
    data = yaml.safe_load((DIGITS / "spec.yaml").read_text())
    data["source"]["state_dict"] = str(DIGITS / "artifacts" / "digits_mlp.pt")
    data["validation"]["data"]["npz"] = str(DIGITS / "artifacts" / "validation.npz")
    data["calibration"]["data"]["npz"] = str(DIGITS / "artifacts" / "calibration.npz")
    if not full:
        data["variants"] = []
        data.pop("calibration")
        data["timing"] = {"enabled": False}
    data.update(overrides)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(DIGITS / "digits_model.py", dest / "digits_model.py")
    path = dest / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def outlier_digits_spec(dest: Path, **overrides) -> Path:
    """The digits spec with every variant, on the trained MLP behind an input outlier (tests/models/outlier_digits.py):
    FP32 and FP16 answer as the MLP does; INT8 (dynamic, and static MinMax) collapses on any CPU."""
    path = digits_spec_copy(dest, full=True, **overrides)
    data = yaml.safe_load(path.read_text())
    data["source"] = {
        "kind": "pytorch",
        "factory": "outlier_digits:build_model",
        "factory_args": {"state_dict_path": str(DIGITS / "artifacts" / "digits_mlp.pt")},
    }
    shutil.copy(ROOT / "tests" / "models" / "outlier_digits.py", dest / "outlier_digits.py")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def minilm_spec_copy(dest: Path, **overrides) -> Path:
    """A copy of the MiniLM spec (and its modules and sentences) in `dest`: FP32 only, no timing, unless overridden."""
    data = yaml.safe_load((MINILM / "spec.yaml").read_text())
    data["variants"] = []
    data["int8_search"] = {"enabled": False}
    data["timing"] = {"enabled": False}
    data.update(overrides)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("minilm_model.py", "minilm_data.py", "sentences.txt"):
        shutil.copy(MINILM / name, dest / name)
    path = dest / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def metrics(metrics_url: str) -> dict[str, float]:
    """tritonforge_* and nv_cache_* samples from /metrics, keyed by the full sample name with labels, read once
    the public models' deferred counters have been sent."""
    from tritonforge.serving.metric_names import METRICS_LAG_S

    time.sleep(METRICS_LAG_S)
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("tritonforge_", "nv_cache_")):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def metric(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of metric `name` over the samples whose labels include `labels`."""
    total = 0.0
    for key, value in metrics(metrics_url).items():
        m = re.match(r"([a-z_]+)\{(.*)\}", key)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += value
    return total


def mlp_spec(root: Path, name: str, w1=None, **sections: dict) -> Path:
    """A 16-32-4 MLP as an ONNX file (MatMul, Relu, MatMul; weights w1 and w2, `w1` given or random), 64 held-out
    samples and a spec that builds it with an FP16 variant and short timing; `sections` extend its sections."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 32)).astype(np.float32) if w1 is None else w1
    w2 = rng.normal(size=(32, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "mlp.onnx")
    np.savez(root / "val.npz", x=np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32))
    spec: dict = {
        "name": name,
        "source": {"kind": "onnx", "path": "mlp.onnx"},
        "max_batch_size": 8,
        "inputs": [{"name": "x", "dtype": "float32", "shape": [16]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}],
        "validation": {"data": {"npz": "val.npz"}},
        "variants": [{"kind": "onnx_fp16"}],
        "timing": {"batch_sizes": [1, 8], "max_windows": 3, "window_s": 0.05},
    }
    for section, values in sections.items():
        spec[section] = spec.get(section, {}) | values
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


def search_spec(int8_search: dict):
    """A spec for driving the INT8 search directly (its files are never read): one input, one output, `int8_search`."""
    from tritonforge.spec import parse_spec

    return parse_spec(
        {
            "name": "m",
            "source": {"kind": "onnx", "path": "m.onnx"},
            "max_batch_size": 4,
            "inputs": [{"name": "x", "dtype": "float32", "shape": [2]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}],
            "validation": {"data": {"npz": "v.npz"}},
            "calibration": {"data": {"npz": "c.npz"}},
            "int8_search": int8_search,
        }
    )


class GatedPoint:
    """What the search reads of a gated point: passed when the gate's worst `margin` is >= 0."""

    def __init__(self, v, margin: float) -> None:
        self.id, self.status, self.notes = v.variant_id, "passed" if margin >= 0 else "rejected", []
        self.gate = {"checks": [{"margin": margin}]}
        self.passed = margin >= 0


_FAILING_RUNG = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("rung on fire", pb_utils.TritonError.INTERNAL))
                for _ in requests]
"""


def python_stand_in(repo: Path, rung: str, failing: bool = False) -> None:
    """Put a Python-backend model where a native rung is (same name, version, I/O and ONNX file) so the local
    server, which has no onnxruntime backend, can load that rung: it runs the rung's ONNX file in-process the way
    the runner does, or, `failing`, answers every request with a server-side error."""
    from tritonforge.builder.serving_graph import file_hashes, serving_files
    from tritonforge.repository.config import write_config
    from tritonforge.repository.reader import Repository
    from tritonforge.serving.settings import PARAMETER, RunnerSettings, dumps

    repository = Repository(repo)
    role, version_dir = repository.role(rung), repository.version_dir(rung)
    config = repository.config(rung)
    config.backend, config.platform, config.default_model_filename = "python", "", ""
    config.ClearField("instance_group")
    if failing:
        config.ClearField("model_warmup")  # it would fail its warm-up and never load
    files = serving_files("runner")
    if failing:
        files["model.py"] = _FAILING_RUNG.encode()
    settings = RunnerSettings(
        file=role.file,
        variant=role.variant,
        intra_op_threads=1,
        files=file_hashes({**files, role.file: version_dir / role.file}),
    )
    config.parameters[PARAMETER].string_value = dumps(settings)
    for rel, content in files.items():
        path = version_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    write_config(config, repo / rung)


def planned_repository(repo: Path, spec_data: dict, version: int = 1) -> Path:
    """The models a build of `spec_data` writes (a stand-in ONNX FP32 rung, the runner, the public model: configs and
    serving files as the build lays them out), its manifest and held-out samples in `repo`; no build runs, so unit
    tests can read a repository the way every command does."""
    import numpy as np

    from tritonforge import dtypes
    from tritonforge.builder.serving_graph import ServingPlan, plan_models
    from tritonforge.builder.variants import VariantOutcome
    from tritonforge.repository.batches import save_batches
    from tritonforge.repository.files import VALIDATION_NPZ
    from tritonforge.repository.manifest import Manifest
    from tritonforge.spec import parse_spec

    spec = parse_spec(spec_data)
    onnx = repo.parent / f"{spec.name}_fp32.onnx"
    onnx.parent.mkdir(parents=True, exist_ok=True)
    onnx.write_bytes(b"onnx_fp32")
    fp32 = VariantOutcome(
        "onnx_fp32",
        "onnx_fp32",
        "onnxruntime",
        "fp32",
        {},
        status="passed",
        published_as=f"{spec.name}_onnx_fp32",
        file=str(onnx),
    )
    models = plan_models(spec, ServingPlan([fp32], fp32, fp32, "v1", None), version=version)
    for m in models:
        m.write(repo / m.name, version)
    Manifest(
        name=spec.name,
        tritonforge_version="test",
        fingerprint="",
        spec_hash="",
        inputs={},
        tools={},
        version=version,
        roles={m.name: m.role for m in models},
    ).write(repo / spec.name)
    rng = np.random.default_rng(0)
    batch = {
        t.name: rng.uniform(0, 1, (4, *(d if d > 0 else 8 for d in t.shape))).astype(dtypes.by_name(t.dtype).numpy)
        for t in spec.inputs
    }
    save_batches(repo / spec.name / VALIDATION_NPZ, [batch])
    return repo
