"""The digits example's model: a small MLP over scikit-learn's 8x8 digit images (64 pixels scaled to [0, 1])."""

from __future__ import annotations

import torch
from torch import nn


class DigitsMLP(nn.Module):
    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 10),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def build_model(hidden: int = 128) -> DigitsMLP:
    """Factory named by spec.yaml (`source.factory: digits_model:build_model`)."""
    return DigitsMLP(hidden)
