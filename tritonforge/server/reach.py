"""Is a Triton server there? The one check commands that talk to a running server (`reload`, `perf --url`,
`perf-search --url`) run first, so that nothing answering is one line naming the address, not a failure per model."""

from __future__ import annotations

import re

from tritonforge.errors import ServerError

GRPC_PORT = 8001  # Triton's default gRPC port (HTTP: 8000, metrics: 8002)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def grpc_address(url: str, option: str = "--url") -> str:
    """`url` if it is a gRPC host:port; an http:// (or any scheme://) URL is refused, naming `option`."""
    if _SCHEME.match(url):
        rest = _SCHEME.sub("", url).split("/")[0]
        host = rest.rsplit(":", 1)[0] if ":" in rest else rest
        raise ServerError(
            f"{option} {url}: give Triton's gRPC endpoint as host:port without a scheme, e.g. {host or '127.0.0.1'}:"
            f"{GRPC_PORT} (gRPC is port {GRPC_PORT} by default; {url.split('://')[0]}:// is for the HTTP port)"
        )
    if not url.rpartition(":")[2].isdigit():
        raise ServerError(
            f"{option} {url}: give host:port, e.g. {url or '127.0.0.1'}:{GRPC_PORT} (Triton's gRPC port by default)"
        )
    return url


def require_server(url: str, timeout: float = 5.0, option: str = "--url") -> None:
    """Raise one ServerError naming `url` when no Triton server answers gRPC there within `timeout` seconds."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    grpc_address(url, option)
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
