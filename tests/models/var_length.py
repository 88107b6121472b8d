"""Models of variable length for the `tritonforge init` tests from `module:callable`: a token classifier whose two
int64 inputs share one sequence length (an embedding of VOCAB rows, a masked mean, a dict {"logits": ...} out),
the same one refusing every exporter, and an LSTM regressor over [T, FEATURES] steps."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

VOCAB, CLASSES, FEATURES = 50, 3, 4


class TokenClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 8)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embed(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return {"logits": self.head(pooled)}


class Untraceable(TokenClassifier):
    """The same model, refusing to be exported (as a model no exporter can trace fails)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if torch.compiler.is_exporting() or torch.compiler.is_compiling():
            raise RuntimeError("this model cannot be exported")
        return super().forward(input_ids, attention_mask)


class LSTMRegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(FEATURES, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(steps)
        return self.head(out[:, -1])


def token_classifier() -> TokenClassifier:
    return TokenClassifier()


def untraceable() -> Untraceable:
    return Untraceable()


def lstm_regressor() -> LSTMRegressor:
    return LSTMRegressor()


def token_batches(lengths: list[int], n: int = 3, high: int = VOCAB - 10, seed: int = 0) -> dict[str, np.ndarray]:
    """One batch per length as keys PREFIX/NAME (attention_mask first: the file's order is not forward's), the ids
    below `high` so that the samples' max is not the vocabulary's."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, length in enumerate(lengths):
        mask = np.ones((n, length), np.int64)
        mask[0, length // 2 :] = 0
        out[f"b{i}/attention_mask"] = mask
        out[f"b{i}/input_ids"] = rng.integers(0, high, size=(n, length), dtype=np.int64)
    return out


def step_batches(lengths: list[int], n: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"b{i}/steps": rng.standard_normal((n, t, FEATURES)).astype(np.float32) for i, t in enumerate(lengths)}
