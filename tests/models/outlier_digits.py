"""The trained digits MLP behind one constant input of 1e4 that every first-layer weight ignores (its column is
zero): FP32 and FP16 answer exactly as the MLP does, but INT8 with MinMax or dynamic activation scales must spend
its 8 bits on a range of 1e4, so every pixel (0..1) rounds to zero and the answers collapse on any CPU.
A rejected INT8 variant by construction, not by one CPU's rounding."""

from __future__ import annotations

import torch
from torch import nn

OUTLIER = 1.0e4


class OutlierDigits(nn.Module):
    def __init__(self, state_dict_path: str, hidden: int = 128) -> None:
        super().__init__()
        state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
        first = nn.Linear(65, hidden)
        with torch.no_grad():
            first.weight.zero_()
            first.weight[:, :64] = state["net.0.weight"]
            first.bias.copy_(state["net.0.bias"])
        self.net = nn.Sequential(first, nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, 10))
        with torch.no_grad():
            for i in (2, 4):
                self.net[i].weight.copy_(state[f"net.{i}.weight"])
                self.net[i].bias.copy_(state[f"net.{i}.bias"])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        outlier = torch.full_like(image[:, :1], OUTLIER)
        return self.net(torch.cat([image, outlier], dim=1))


def build_model(state_dict_path: str) -> OutlierDigits:
    return OutlierDigits(state_dict_path)
