"""Models with a dynamic length, for the tests that build and serve them: a BERT-style classifier whose two
inputs share the dim `sequence` (token ids and attention mask), and an LSTM regressor over [time, 4] features.
Small, seeded, untrained: what matters is that the served answers equal the module's."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

VOCAB, FEATURES = 50, 4


class MaskedClassifier(nn.Module):
    """Embedding, one self-attention layer with the mask, masked mean, 3 class scores."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 16)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.classify = nn.Linear(16, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        mask = attention_mask.to(x.dtype)
        x = x + self.attention(x, x, x, need_weights=False)[0] * mask.unsqueeze(-1)
        pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.classify(pooled)


class Recurrent(nn.Module):
    """LSTM over [time, FEATURES], one value per sequence from the last step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.lstm = nn.LSTM(FEATURES, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(series)
        return self.head(out[:, -1])


def build_classifier() -> nn.Module:
    return MaskedClassifier().eval()


def build_recurrent() -> nn.Module:
    return Recurrent().eval()


def token_batch(n: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(n, length), dtype=np.int64)
    mask = np.ones((n, length), dtype=np.int64)
    for row, keep in enumerate(rng.integers(2, length + 1, size=n)):
        mask[row, keep:] = 0
        ids[row, keep:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def series_batch(n: int, length: int, seed: int) -> dict[str, np.ndarray]:
    return {"series": np.random.default_rng(seed).standard_normal((n, length, FEATURES)).astype(np.float32)}
