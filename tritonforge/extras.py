"""What each optional extra of the package brings, and the one error a missing one raises.

The base install builds from ONNX, runs the CLI and the client. A feature that needs more names its extra here,
and `require` turns a missing import into a message that says which extra to install instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tritonforge.errors import TritonforgeError

EXTRAS: dict[str, str] = {
    "torch": "PyTorch source kinds (pytorch, torchscript, exported_program) and `tritonforge init` on them",
    "sklearn": "the sklearn source kind (scikit-learn estimators exported by skl2onnx)",
    "text": "models behind a tokenizer (`preprocess: tokenizer`): Hugging Face tokenizers",
    "perf": "the plots of `tritonforge perf` (matplotlib)",
    "testing": "tritonforge.testing's redis-server fixture (redis-py)",
    "gpu": "TensorRT plans, torch-tensorrt and NVML (needs a CUDA device)",
}


class MissingExtraError(TritonforgeError):
    """A feature needs a package that an optional extra of tritonforge installs."""


def install_hint(extra: str) -> str:
    """The command that installs `extra`."""
    hint = f"pip install 'tritonforge[{extra}]'"
    if extra == "torch":  # an open torch requirement pulls a multi-GB CUDA build
        hint += "; install the torch build you want first (e.g. torch==2.13.0 from PyPI is the CPU one)"
    return hint


def missing(module: str, extra: str, feature: str) -> str | None:
    """None when `module` imports; else the message `require` would raise."""
    try:
        require(module, extra, feature)
    except MissingExtraError as e:
        return str(e)
    return None


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming `feature` and the extra that installs it."""
    if extra not in EXTRAS:
        raise ValueError(f"{extra!r} is not an extra of tritonforge ({', '.join(EXTRAS)})")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but one of its own imports is broken: show that
        raise MissingExtraError(
            f"{feature} needs {module.split('.')[0]}, which is not installed: tritonforge's [{extra}] extra brings it "
            f"({install_hint(extra)})"
        ) from None
