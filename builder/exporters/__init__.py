"""Exporters to ONNX, one module per source framework, each runnable on its own (`python -m builder.exporters.torch2onnx`)."""
