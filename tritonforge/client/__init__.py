"""tritonforge client: a thin layer over tritonclient's gRPC client. numpy in, numpy out, checked first."""

from tritonforge.client.aio import AsyncClient
from tritonforge.client.errors import (
    ClientError,
    DeadlineExceeded,
    EndpointsUnavailable,
    InferenceFailed,
    InputError,
    InvalidEndpoint,
    ModelNotFound,
)
from tritonforge.client.model_info import ModelInfo, TensorInfo
from tritonforge.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "DeadlineExceeded",
    "EndpointsUnavailable",
    "InferenceFailed",
    "InputError",
    "InvalidEndpoint",
    "ModelInfo",
    "ModelNotFound",
    "TensorInfo",
]
