"""What every runtime a variant can be served in provides, and the table of them.

A runtime owns three things: how the build opens and runs one of its files (its runner), the Triton backend that
serves it (backend and platform name), and the Triton model layout a published variant gets (the file name(s) in
the version directory and the config from tritonforge.repository.config). Adding a runtime = one module with a
Runtime subclass + one registration line in tritonforge/builder/runtimes/__init__.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from tritonforge.serving.batching import Batch

if TYPE_CHECKING:
    from tritonforge.builder.serving_ort import RemoteSession, ServingOrt
    from tritonforge.repository import config as cfg
    from tritonforge.spec import TensorSpec


Run = Callable[[Batch], Batch]


@dataclass(frozen=True)
class Opened:
    """A file opened in this process: how to run it, where it runs (for the report) and the runtime's label."""

    run: Run
    device: str
    label: str


@dataclass(frozen=True)
class Layout:
    """A published variant's Triton model: its config and its version directory (file name -> built file)."""

    config: cfg.ModelConfig
    files: dict[str, Path]

    @property
    def file(self) -> str:
        """The model file (the first of `files`), recorded in the manifest's role."""
        return next(iter(self.files))


class Runtime(ABC):
    """One runtime: its name (what a converter's `runtime` says), its Triton backend, its runner and layout."""

    name: ClassVar[str]  # "onnxruntime" | "tensorrt" | "pytorch"
    backend: ClassVar[str]  # Triton's backend serving the file
    platform: ClassVar[str]  # Triton's platform name for the file format
    instance_kind: ClassVar[str]  # the instance group kind its models get: "auto" | "gpu" | "cpu"

    @abstractmethod
    def open(self, path: Path, input_names: list[str], output_names: list[str], threads: int = 0) -> Opened:
        """Load `path` in this process; `threads`: intra-op threads where the runtime takes them."""

    def open_in_serving_environment(
        self, ort: ServingOrt, path: Path, output_names: list[str], threads: int
    ) -> RemoteSession | None:
        """Open `path` in the serving environment's worker (`ort`) instead, when this runtime runs there: returns
        its RemoteSession, or None to open in this process (the default)."""
        return None

    @abstractmethod
    def layout(
        self,
        name: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        scheduling: cfg.Scheduling,
        path: Path,
    ) -> Layout:
        """The Triton model `name` serving the built file `path`."""


class RuntimeRegistry:
    """Runtimes by name. Registering a name twice is an error; an unknown name is one that lists the known."""

    def __init__(self) -> None:
        self._runtimes: dict[str, Runtime] = {}

    def register(self, runtime: Runtime) -> Runtime:
        if runtime.name in self._runtimes:
            raise ValueError(
                f"runtime {runtime.name!r} is registered twice: {type(self._runtimes[runtime.name]).__name__} "
                f"and {type(runtime).__name__}"
            )
        self._runtimes[runtime.name] = runtime
        return runtime

    def __getitem__(self, name: str) -> Runtime:
        try:
            return self._runtimes[name]
        except KeyError:
            raise ValueError(f"unknown runtime {name!r} (known: {', '.join(self._runtimes)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._runtimes

    def __iter__(self) -> Iterator[str]:
        return iter(self._runtimes)

    @property
    def names(self) -> list[str]:
        return list(self._runtimes)
