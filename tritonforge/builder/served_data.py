"""The held-out samples as the public model's tokenizer serves them: each text padded to its length bucket,
and texts of one bucket batched together as dynamic batching forms them. The gate checks variants on this form
too, so a variant that passes on the validation batches (padded to their longest text) but not on bucket padding
(more masked positions, other batches, other dynamic-quantization scales) is never published."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from tritonforge.builder.data import Dataset
from tritonforge.builder.serving_graph import preprocess_settings
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec

SERVED_SAMPLES = 256  # held-out texts checked as served
SERVED_BATCH = 32  # texts of one bucket per batch


def served_dataset(spec: BuildSpec, texts: list[str] | None, tokenizer_file: Path | None) -> Dataset | None:
    """Batches of the first held-out texts, encoded and padded as served (None without a tokenizer or texts)."""
    settings = preprocess_settings(spec)
    if settings is None or tokenizer_file is None or not texts:
        return None
    from tritonforge.serving.tokenize import TextEncoder

    encoder = TextEncoder(tokenizer_file, settings, [t.name for t in spec.inputs])
    requests = encoder.encode([[t] for t in texts[:SERVED_SAMPLES]])
    by_width: dict[int, list[Batch]] = defaultdict(list)
    for request in requests:
        by_width[next(iter(request.values())).shape[1]].append(request)
    batches = []
    for width in sorted(by_width):
        group = by_width[width]
        for start in range(0, len(group), SERVED_BATCH):
            part = group[start : start + SERVED_BATCH]
            batches.append({name: np.concatenate([r[name] for r in part]) for name in part[0]})
    return Dataset(batches, None, f"{len(requests)} held-out texts as served (bucket padding)")
