"""What a build reads before it does anything: the spec, its held-out and calibration data, and the fingerprint of
everything that decides the build's output (a build whose fingerprint did not change does nothing)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tritonforge import __version__
from tritonforge.builder.converters import CONVERTERS
from tritonforge.builder.data import Dataset, load_dataset
from tritonforge.builder.serving_graph import serving_sources, shadow_settings
from tritonforge.builder.serving_ort import ServingOrt
from tritonforge.builder.sources import check_source, require_source, source_files, source_tools
from tritonforge.builder.variants import (
    conversion_code,
)
from tritonforge.errors import DataError
from tritonforge.extras import require
from tritonforge.hardware import gpu_info
from tritonforge.hashing import combine, sha256_file
from tritonforge.repository.manifest import tool_versions
from tritonforge.spec import BuildSpec, load_spec


@dataclass
class BuildInputs:
    """A build's inputs, read and hashed."""

    spec: BuildSpec
    validation: Dataset
    calibration: Dataset | None
    hashes: dict[str, str]
    tools: dict[str, str]
    fingerprint: str
    tokenizer_file: Path | None


def read_inputs(spec_path: str | Path, ort: ServingOrt | None) -> BuildInputs:
    spec = load_spec(spec_path)
    check_source(spec)  # a spec that disagrees with the source's own signature: before its data is read
    shadow_settings(spec, "")  # a shadow window too small for the gate: before any work
    validation = load_dataset(spec, spec.validation.data, "validation.data")
    validation = validation.rebatch(min(spec.validation.batch_size, spec.max_batch_size))
    calibration = None
    if spec.calibration is not None:
        calibration = load_dataset(spec, spec.calibration.data, "calibration.data").rebatch(spec.max_batch_size)
        shared = len(calibration.sample_hashes() & validation.sample_hashes())
        if shared:
            raise DataError(
                f"calibration.data shares {shared} sample(s) with validation.data; calibrate on other "
                "samples (the gate needs held-out data)"
            )
    require_source(spec)  # before its files: a factory's module imports what the kind needs
    if spec.preprocess is not None:
        require("tokenizers", "text", "preprocess: tokenizer")
    hashes = {"spec": spec.content_hash(), "validation.data": validation.fingerprint()}
    if calibration is not None:
        hashes["calibration.data"] = calibration.fingerprint()
    for name, path in source_files(spec).items():
        hashes[name] = sha256_file(path)
    tokenizer_file = None
    if spec.preprocess is not None:
        tokenizer_file = spec.resolve_ref(spec.preprocess.tokenizer_file, "preprocess.tokenizer_file")
        hashes["preprocess.tokenizer_file"] = sha256_file(tokenizer_file)
    for path in serving_sources():
        hashes[f"code/{path.parent.name}/{path.name}"] = sha256_file(path)
    hashes["code/variants"] = conversion_code()
    tools = tool_versions() | source_tools(spec)
    if ort is not None:  # the runtime every ONNX figure comes from
        tools["serving:onnxruntime"] = ort.versions_now()["onnxruntime"]
    parts = {"tritonforge": __version__, **hashes, **{f"tool:{k}": v for k, v in tools.items()}}
    if any(CONVERTERS[v.kind].needs_gpu for v in spec.variants):
        parts["gpu"] = json.dumps(gpu_info().identity(), sort_keys=True)  # plans are tied to GPU and TensorRT
    return BuildInputs(spec, validation, calibration, hashes, tools, combine(parts), tokenizer_file)
