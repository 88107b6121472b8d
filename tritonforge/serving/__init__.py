"""Sources of the Triton Python-backend models the builder writes into a repository.

Each `<kind>.py` here becomes `<model>/1/model.py`; the helper modules listed in HELPERS are copied beside it.
They import only numpy, onnxruntime, redis, tokenizers and Triton's `triton_python_backend_utils`, so the
repository runs unchanged in an NGC Triton container.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
HELPERS = ("tf_batching.py", "tf_breaker.py", "tf_codec.py", "tf_metrics.py", "tf_store.py")


def model_source(kind: str) -> Path:
    """Path of the model.py source for a Python-model kind, e.g. 'ort_runner'."""
    path = HERE / f"{kind}.py"
    if not path.is_file():
        raise KeyError(f"no Python-backend model source named {kind!r}")
    return path


def helper_sources() -> list[Path]:
    return [HERE / name for name in HELPERS]
