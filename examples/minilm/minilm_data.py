"""Tokenized sentence batches for the MiniLM example, from sentences.txt (written for this project).

Every third sentence is calibration data; the others are held out for validation. Validation batches are
padded to their longest sentence (as served); calibration batches are padded to one common length, which the
histogram calibrators (Entropy, Percentile) need.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from minilm_model import model_dir

HERE = Path(__file__).resolve().parent
MAX_TOKENS = 128


def sentences() -> list[str]:
    lines = (HERE / "sentences.txt").read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.startswith("#")]


@lru_cache(maxsize=8)
def tokenizer(pad_to: int | None = None):
    """The model's tokenizer, truncating at MAX_TOKENS and padding to `pad_to` (the longest text when None);
    loaded once per padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=pad_to)
    return tok


def encode(texts: list[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
    enc = tokenizer(pad_to).encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
    }


def _batches(texts: list[str], size: int, pad_to: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    for i in range(0, len(texts), size):
        yield encode(texts[i : i + size], pad_to)


def validation_texts() -> list[str]:
    return [s for i, s in enumerate(sentences()) if i % 3 != 0]


def calibration_texts() -> list[str]:
    return [s for i, s in enumerate(sentences()) if i % 3 == 0]


def validation_batches() -> Iterator[dict[str, np.ndarray]]:
    yield from _batches(validation_texts(), 32)


def calibration_batches() -> Iterator[dict[str, np.ndarray]]:
    texts = calibration_texts()
    longest = max(len(e.ids) for e in tokenizer().encode_batch(texts))
    yield from _batches(texts, 16, pad_to=longest)
