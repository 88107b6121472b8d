"""Is a Triton server there? The one check commands that talk to a running server (`reload`, `perf --url`,
`perf-search --url`) run first, so that nothing answering is one line naming the address, not a failure per model."""

from __future__ import annotations

from tritonforge.client.endpoints import GRPC_PORT, grpc_endpoint
from tritonforge.client.errors import InvalidEndpoint
from tritonforge.errors import ServerError


def require_server(url: str, timeout: float = 5.0, option: str = "--url") -> None:
    """Raise one ServerError naming `url` when no Triton server answers gRPC there within `timeout` seconds."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        grpc_endpoint(url, port=True)
    except InvalidEndpoint as e:
        raise ServerError(f"{option} {e}") from None
    try:
        client = grpcclient.InferenceServerClient(url)
    except Exception as e:  # a malformed address
        raise ServerError(f"{option} {url}: not a gRPC host:port ({e})") from None
    try:
        live = client.is_server_live(client_timeout=timeout)
    except InferenceServerException as e:
        reason = (e.message() or str(e)).splitlines()[0]
        raise ServerError(
            f"no Triton server answers gRPC at {url} ({reason}): start one (tritonforge serve REPO) or give {option} "
            f"the host:port of a running one (gRPC, port {GRPC_PORT} by default)"
        ) from None
    finally:
        client.close()
    if not live:
        raise ServerError(f"the Triton server at {url} is not live (it is starting or stopping); try again when it is")
