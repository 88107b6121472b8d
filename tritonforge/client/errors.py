"""Client errors. Each message names the model, tensor or endpoint concerned."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every tritonforge client error."""


class InputError(ClientError, ValueError):
    """An input does not fit the model's metadata (name, dtype, shape, batch size, values). Raised before sending."""


class InvalidEndpoint(ClientError, ValueError):
    """An endpoint that is not a gRPC host:port (an http:// URL): refused when the client is made."""


class ModelNotFound(ClientError):
    """The server does not know the model (or version); with several endpoints, none of them serves it."""


class InferenceFailed(ClientError):
    """The server answered the request with an error; `status` is the gRPC status name."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


class EndpointsUnavailable(ClientError):
    """No endpoint answered within the deadline (all down, or retries used up)."""


class DeadlineExceeded(ClientError):
    """The request took longer than its timeout."""
