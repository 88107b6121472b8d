"""The held-out requests the build's repository check sends to the public model."""

from __future__ import annotations

import numpy as np

from tritonforge.builder import probe_sample
from tritonforge.builder.inputs import BuildInputs
from tritonforge.builder.serving_check import Probe
from tritonforge.builder.serving_graph import preprocess_settings
from tritonforge.errors import DataError
from tritonforge.spec import BuildSpec

PROBE_SAMPLES = 8  # held-out samples the public model answers in the build's check (one alone, then a batch)


def check_requests(inp: BuildInputs, texts: list[str] | None) -> Probe:
    """Held-out requests for the build's check: the first sample alone, then a batch of the next ones."""
    spec = inp.spec
    if spec.preprocess is not None:
        from tritonforge.serving.tokenize import TextEncoder

        chosen = texts or [probe_sample.FALLBACK_TEXT]
        groups = [g for g in (chosen[:1], chosen[1 : 1 + PROBE_SAMPLES]) if g]
        settings = preprocess_settings(spec)
        assert settings is not None and inp.tokenizer_file is not None
        encoder = TextEncoder(inp.tokenizer_file, settings, [t.name for t in spec.inputs])
        name = spec.preprocess.text_input
        return Probe([{name: np.array([[t] for t in g], dtype=object)} for g in groups], [encoder.encode([g])[0] for g in groups])
    first = inp.validation.batches[0]
    n = len(next(iter(first.values())))
    cuts = [c for c in ((0, 1), (1, min(n, 1 + PROBE_SAMPLES))) if c[1] > c[0]]
    batches = [{k: v[a:b] for k, v in first.items()} for a, b in cuts]
    return Probe(batches, batches)


def sample_texts(spec: BuildSpec) -> list[str] | None:
    """Held-out texts for a tokenizer-fronted model (from preprocess.sample_texts), at most 2,000."""
    if spec.preprocess is None or not spec.preprocess.sample_texts:
        return None
    from tritonforge.spec.refs import import_callable

    fn = import_callable(spec.preprocess.sample_texts, spec.base_dir, "preprocess.sample_texts")
    try:
        texts = [str(t) for t in fn()][:2000]
    except Exception as e:
        raise DataError(f"preprocess.sample_texts ({spec.preprocess.sample_texts}) raised {type(e).__name__}: {e}") from None
    if not texts:
        raise DataError(f"preprocess.sample_texts ({spec.preprocess.sample_texts}) returned no texts")
    return texts
