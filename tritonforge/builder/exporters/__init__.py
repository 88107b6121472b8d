"""Exporters to ONNX, one module per source framework, each runnable on its own (`python -m tritonforge.builder.exporters.torch2onnx`).
Each source kind (tritonforge.builder.sources) names the exporter that turns it into the FP32 ONNX reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ExportResult:
    """Where the ONNX file went and how it was made."""

    path: Path
    exporter: str  # "dynamo", "torchscript", "skl2onnx", or "none (ONNX source)"
    notes: list[str]
