"""A model tritonforge has never seen, for the `init` and any-model tests: int64 token ids of a 100-word
vocabulary and dynamic length, plus float features; class scores and a regression value out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

VOCAB, FEATURES = 100, 3


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 16)
        self.mix = nn.Linear(16 + FEATURES, 32)
        self.scores = nn.Linear(32, 4)
        self.value = nn.Linear(32, 1)

    def forward(self, ids: torch.Tensor, features: torch.Tensor):
        pooled = self.embed(ids).mean(dim=1)
        hidden = torch.relu(self.mix(torch.cat([pooled, features], dim=1)))
        return self.scores(hidden), self.value(hidden)


def samples(n: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(0, VOCAB, size=(n, length), dtype=np.int64),
        "features": rng.standard_normal((n, FEATURES)).astype(np.float32),
    }


def export(path: Path) -> Path:
    """The model as an ONNX file with dynamic batch and length (names: ids, features -> scores, value)."""
    batch, length = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("length", min=2, max=512)
    example = samples(2, 7)
    torch.onnx.export(
        TwoInputs().eval(),
        (torch.from_numpy(example["ids"]), torch.from_numpy(example["features"])),
        str(path),
        input_names=["ids", "features"],
        output_names=["scores", "value"],
        dynamo=True,
        dynamic_shapes=({0: batch, 1: length}, {0: batch}),
        external_data=False,
    )
    return path
