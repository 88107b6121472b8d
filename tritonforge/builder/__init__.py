"""The builder: a spec's model exported, verified, converted into gated and timed variants, and published as a
Triton model repository. Importing it registers its source kinds and converters (and their spec options) with the
spec."""

from tritonforge.builder import converters as _converters  # noqa: F401  (registers the variant kinds)
from tritonforge.builder import sources as _sources  # noqa: F401  (registers the source kinds)
