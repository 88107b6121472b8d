"""When Triton's own response cache may answer for the public model.

Triton keys its response cache on the model, its version and each input's name and data bytes: not on shapes or
dtypes. Two requests whose bytes are equal but whose shapes differ (a variable dim: [1, 6] against [2, 3]) would
share one entry, and one would get the other's answer. The key tells requests apart only when the bytes decide the
shape: every non-batch dim fixed (the batch size is then the byte count over one item's), and every element's
size known from the bytes (fixed-size dtypes; a BYTES element carries its own 4-byte length, so a string batch's
elements are recovered from its bytes, and with fixed non-batch dims so is its batch size).
"""

from __future__ import annotations

from tritonforge.spec import BuildSpec


def triton_cache_refusal(spec: BuildSpec) -> str | None:
    """Why Triton's response cache must not answer for this spec's public model (None: it may)."""
    for t in spec.public_inputs:
        if any(d < 0 for d in t.shape):
            return (
                f"input '{t.name}' has a variable dim {t.shape}: Triton's cache key holds an input's bytes, not its "
                "shape, so two requests of equal bytes in different shapes would share one answer"
            )
    return None


def triton_cache_wanted(spec: BuildSpec) -> bool:
    """Whether the spec asks for Triton's response cache (alone, or as the first tier)."""
    return spec.serving.cache.kind == "triton" or spec.serving.triton_cache.enabled


def triton_cache_enabled(spec: BuildSpec) -> bool:
    """Whether the public model's config enables Triton's response cache."""
    return triton_cache_wanted(spec) and triton_cache_refusal(spec) is None
