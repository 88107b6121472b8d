"""tritonforge client: a thin layer over tritonclient's gRPC client. numpy in, numpy out, checked first."""

from client.aio import AsyncClient
from client.errors import (
    ClientError,
    DeadlineExceeded,
    EndpointsUnavailable,
    InferenceFailed,
    InputError,
    ModelNotFound,
)
from client.model_info import ModelInfo, TensorInfo
from client.sync import Client

__all__ = [
    "AsyncClient", "Client", "ClientError", "DeadlineExceeded", "EndpointsUnavailable", "InferenceFailed",
    "InputError", "ModelInfo", "ModelNotFound", "TensorInfo",
]
