"""Reloading a build into a server that serves the repository in explicit model control mode.

Compute models first and the public model last (the order the build published them in), so a public model is
only ever loaded beside the compute models of its own build; models a rebuild dropped are unloaded after.
Triton keeps serving the loaded version of a model until its new version is ready, so a reload under load
fails no request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tritonforge.errors import ServerError
from tritonforge.repository.reader import Repository


@dataclass
class ReloadResult:
    loaded: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # model -> the server's reason (it keeps serving the old)
    # model -> the native backend the server has no library for: expected on the local server (Python backend only)
    native_only: dict[str, str] = field(default_factory=dict)


def reload_build(url: str, repo: Path, public: str, timeout: float = 300.0) -> ReloadResult:
    """Load every model of `public`'s build on the server at `url` (gRPC host:port), then unload the models of
    the build before that this build dropped (its manifest names them)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tritonforge.server.reach import require_server
    from tritonforge.server.summary import is_native_only, native_backend

    repository = Repository(repo)
    order = repository.reload_order(public)
    require_server(url)
    result = ReloadResult()
    client = grpcclient.InferenceServerClient(url)
    try:
        for model in order:
            try:
                client.load_model(model, client_timeout=timeout)
                result.loaded.append(model)
            except InferenceServerException as e:
                # A rung whose backend this server lacks (or a plan for another GPU) fails to load by design.
                if is_native_only(repository, model, e.message() or ""):
                    result.native_only[model] = native_backend(repository, model) or ""
                else:
                    result.failed[model] = e.message()
        for model in repository.manifest(public).dropped:
            try:
                if client.is_model_ready(model):
                    client.unload_model(model)
                    result.unloaded.append(model)
            except InferenceServerException as e:
                raise ServerError(f"{url}: cannot unload '{model}': {e.message()}") from None
    finally:
        client.close()
    return result
