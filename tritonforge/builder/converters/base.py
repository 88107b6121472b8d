"""The interface every conversion implements, and running one conversion alone from the command line."""

from __future__ import annotations

import argparse
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from tritonforge.builder.converters.fusion import fused_graph
from tritonforge.spec.base import VariantBase

if TYPE_CHECKING:  # the spec is built from this registry: it cannot be imported here at run time
    from tritonforge.builder.data import Dataset
    from tritonforge.spec import BuildSpec


Options = TypeVar("Options", bound=VariantBase)
# The FP32 graph a conversion starts from: as exported, or after the graph-optimization stage (fusion.py)
SourceGraph = Literal["exported", "fused"]


class NotApplicable(Exception):  # noqa: N818 (a verdict, not a failure)
    """The conversion does not apply to this model (e.g. no attention to fuse): the variant is skipped."""


@dataclass
class ConversionJob:
    """Everything one conversion needs. `work_dir` is shared by the conversions of one build (cached steps)."""

    spec: BuildSpec
    variant: VariantBase
    fp32_onnx: Path
    out_path: Path
    work_dir: Path
    calibration: Dataset | None = None
    notes: list[str] = field(default_factory=list)
    validation: Dataset | None = None  # the held-out inputs: their shapes bound TensorRT's optimization profile

    def options(self, kind: type[Options]) -> Options:
        """The variant's entry as the converter's own options model (the spec validated it as that model)."""
        if not isinstance(self.variant, kind):
            raise TypeError(f"variant {self.variant.kind!r} is not a {kind.__name__}")
        return self.variant


class Converter(ABC):
    """FP32 ONNX -> one precision variant. Adding a format = one module with a Converter (its Options model, its
    runtime, what it needs) + one registry line; the spec's `variants` entries are built from the registry."""

    Options: ClassVar[type[VariantBase]]  # the spec fields of this kind, `kind` a Literal of it
    runtime: ClassVar[str]  # "onnxruntime" | "tensorrt" | "pytorch": which Triton backend serves the result
    precision: ClassVar[str]
    suffix: ClassVar[str] = ".onnx"
    # Outputs depend on the other samples of a batch (dynamic quantization computes scales per batch): the
    # gate then checks the variant both batched and one sample at a time.
    batch_dependent: ClassVar[bool] = False
    uses_calibration: ClassVar[bool] = False  # the output depends on the calibration data (scales, profiles)
    needs_gpu: ClassVar[bool] = False  # its artifacts are tied to the GPU (and runtime version) they were built on
    # It claims FP32's answers (a rewrite, not a reduced precision): it must also be within the validation tolerance
    exact: ClassVar[bool] = False

    @property
    def kind(self) -> str:
        return self.Options.model_fields["kind"].default

    @property
    def needs_calibration(self) -> bool:
        """The spec must have a `calibration` section (its options say so)."""
        return self.Options.needs_calibration

    def key_parts(self, spec: BuildSpec, calibration: Dataset | None) -> dict[str, str]:
        """What, besides the variant's options and the FP32 graph, decides this conversion's output."""
        if self.uses_calibration and calibration is not None:
            return {"calibration": calibration.fingerprint()}
        return {}

    def changed_nothing(self, out: Path) -> bool:
        """The converted file at `out` holds none of this converter's precision (nothing it could convert)."""
        return False

    def source_graph(self, variant: VariantBase) -> SourceGraph:
        """Which FP32 graph the conversion of `variant` starts from."""
        return "exported"

    def unavailable(self) -> str | None:
        """Why this conversion cannot run on this machine (e.g. 'no CUDA device'), or None."""
        return None

    @abstractmethod
    def convert(self, job: ConversionJob) -> None:
        """Write the variant to job.out_path."""


def conversion_source(
    converter: Converter, variant: VariantBase, fp32_onnx: Path, work_dir: Path, validation: Dataset | None, notes: list[str]
) -> Path:
    """The FP32 graph the conversion of `variant` starts from: `fp32_onnx`, or its fused graph (made once in
    `work_dir`; NotApplicable with the reason when there is none)."""
    if converter.source_graph(variant) == "exported":
        return fp32_onnx
    if validation is None or not validation.batches:
        raise NotApplicable("the fused graph is checked on held-out data, and there is none")
    fused = fused_graph(fp32_onnx, work_dir, validation.batches[0])
    if fused.path is None:
        raise NotApplicable(fused.reason)
    notes.append(f"from the fused graph ({fused.summary()}; onnxscript's ORT fusions)")
    notes.extend(fused.notes)
    return fused.path


def run_alone(converter: Converter, argv: list[str] | None = None) -> int:
    """`python -m tritonforge.builder.converters.<module> SPEC FP32.onnx OUT [--options JSON]`: one conversion, alone."""
    from tritonforge.builder.data import load_dataset
    from tritonforge.spec import load_spec

    parser = argparse.ArgumentParser(description=f"{converter.kind}: convert one FP32 ONNX file")
    parser.add_argument("spec", type=Path, help="build spec (for signature and calibration data)")
    parser.add_argument("fp32_onnx", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--options", default="{}", help="variant options as JSON, e.g. '{\"per_channel\": true}'")
    args = parser.parse_args(argv)
    reason = converter.unavailable()
    if reason:
        print(f"skipped: {reason}")
        return 3
    spec = load_spec(args.spec)
    variant = converter.Options(**json.loads(args.options))
    calibration = load_dataset(spec, spec.calibration.data, "calibration.data") if spec.calibration else None
    validation = load_dataset(spec, spec.validation.data, "validation.data")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    try:
        source = conversion_source(converter, variant, args.fp32_onnx, args.out.parent, validation, notes)
    except NotApplicable as e:
        print(f"skipped: {e}")
        return 3
    job = ConversionJob(spec, variant, source, args.out, args.out.parent, calibration, notes, validation)
    converter.convert(job)
    for note in job.notes:
        print(f"note: {note}")
    print(f"wrote {args.out}")
    return 0
