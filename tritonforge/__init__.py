"""tritonforge: trained model -> verified ONNX and precision variants -> Triton model repository."""

__version__ = "0.1.0"
