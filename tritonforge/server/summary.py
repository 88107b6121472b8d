"""What a server's model states mean for a tritonforge repository, in one line: which public models answer (and
with what), and which models are native-only (a backend the server lacks: UNAVAILABLE by design on the local
server, which has the Python backend alone; they load in a Triton container).

The local server lists every model READY or UNAVAILABLE with Triton's own reason; without this line a working
build looks broken (3 of 5 models UNAVAILABLE, 'unable to find backend library for backend onnxruntime')."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tritonforge.errors import TritonforgeError
from tritonforge.repository.reader import Repository

MISSING_BACKEND = "unable to find backend library"  # Triton's reason for a model whose backend it does not have
_PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch"}
_NOT_NATIVE = {"python", "ensemble", ""}


def native_backend(repository: Repository, model: str) -> str | None:
    """The native backend `model` runs on (onnxruntime, tensorrt, pytorch), None for Python and ensemble models."""
    try:
        config = repository.config(model)
    except TritonforgeError:
        return None
    backend = config.backend or _PLATFORM_BACKENDS.get(config.platform, config.platform)
    return None if backend in _NOT_NATIVE else backend


def is_native_only(repository: Repository, model: str, reason: str) -> bool:
    """True when `model` did not load only because the server has no library for its native backend."""
    return MISSING_BACKEND in reason and native_backend(repository, model) is not None


@dataclass
class ServingSummary:
    """A repository's models as one server serves them."""

    answering: dict[str, str] = field(default_factory=dict)  # public model -> what computes its answers
    native_only: dict[str, str] = field(default_factory=dict)  # model -> the backend this server lacks
    not_ready: dict[str, str] = field(default_factory=dict)  # public model -> its state and Triton's reason

    def line(self) -> str:
        """One line: the public models that answer, then the native-only models and why that is expected."""
        parts = []
        if self.answering:
            parts.append("call " + ", ".join(f"'{m}' ({how})" for m, how in self.answering.items()))
        if self.not_ready:
            parts.append("not answering: " + "; ".join(f"'{m}' {why}" for m, why in self.not_ready.items()))
        if self.native_only:
            backends = sorted(set(self.native_only.values()))
            parts.append(
                f"native-only, UNAVAILABLE here as expected: {', '.join(self.native_only)} (this server has no "
                f"{' or '.join(backends)} backend; they load in a Triton container, where the public model calls them first)"
            )
        return "; ".join(parts)


def summarize(repo: Path, states: Iterable) -> ServingSummary:
    """`states` (ModelState: name, state, reason) read against the builds in `repo`."""
    repository = Repository(repo)
    by_name = {s.name: s for s in states}
    summary = ServingSummary()
    for name, s in by_name.items():
        if s.state != "READY" and is_native_only(repository, name, s.reason):
            summary.native_only[name] = native_backend(repository, name) or ""
    for public in repository.builds():
        s = by_name.get(public)
        if s is None:
            continue  # not loaded on this server (serve --model)
        if s.state != "READY":
            summary.not_ready[public] = f"{s.state}: {s.reason}".rstrip(": ")
            continue
        rungs_ready = [m for m in repository.rungs(public) if getattr(by_name.get(m), "state", "") == "READY"]
        serving = None
        with contextlib.suppress(TritonforgeError):  # a build from before reports: nothing to say of its runner
            serving = repository.report(public).serving
        runner = serving.in_process_runner if serving else None
        if serving is not None and serving.topology == "ensemble":
            compute = (serving.compute_step or "").split(":")[0]
            summary.answering[public] = "READY: an ensemble" + (f", its compute step {compute}" if compute else "")
        elif rungs_ready:
            summary.answering[public] = f"READY: through {rungs_ready[0]}, then the fallbacks"
        else:
            summary.answering[public] = "READY: with its in-process ONNX Runtime rung" + (f", {runner}" if runner else "")
    return summary
