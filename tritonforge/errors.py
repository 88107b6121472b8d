"""Errors a user can fix. The CLI turns each into one clear message and exit code 2."""

from __future__ import annotations


class TritonforgeError(Exception):
    """Base of every user-facing error: bad spec, missing file, model that fails to load or export."""

    exit_code = 2


class SpecError(TritonforgeError):
    """The build spec is malformed or names something that does not exist."""


class SourceModelError(TritonforgeError):
    """The source model could not be loaded or run."""


class ExportError(TritonforgeError):
    """Export to ONNX, or the checks on the exported graph, failed."""


class DataError(TritonforgeError):
    """Validation or calibration data could not be read or does not fit the spec."""


class VerificationError(TritonforgeError):
    """The exported model does not reproduce the source model within the spec's tolerance."""


class RepositoryError(TritonforgeError):
    """The Triton model repository could not be read or written."""


class ServerError(TritonforgeError):
    """The local Triton server could not be started or did not become ready."""


def closest(name: str, choices: list[str]) -> str | None:
    """The one of `choices` a misspelled `name` most probably means (difflib, cutoff 0.6), or None: the "did you
    mean" of every user error that names a field, a type or a model."""
    import difflib

    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return match[0] if match else None
