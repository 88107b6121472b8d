"""Texts -> token ids and attention mask with the model's tokenizer.json (the `tokenizers` library).

Each request is padded to the smallest length bucket that holds its longest text (e.g. 16/32/64/128), so short
texts stay fast and requests of one bucket still batch together.

Long texts are cut before they are tokenized: the tokenizer keeps only the first `max_length` tokens anyway, and
the cost of a text is that of all its tokens (the library even builds the overflowing ones). A text is encoded
from a prefix that ends just before a "cut character" (see `cut_characters`): for the tokenizers this applies to,
the tokens of `prefix + rest` are the tokens of `prefix` followed by those of `rest`, so once the prefix alone
fills `max_length` the answer is the full text's, ids and mask. A prefix that falls short is retried with a budget
8 times larger, up to the whole text; a tokenizer outside that family is always given whole texts.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from .batching import Batch
from .checks import texts_of
from .settings import PreprocessSettings

# Normalizers that map each character on its own (Unicode normal forms reorder or compose only around combining
# marks, and no cut character below composes with what precedes it): the normalized prefix is a prefix of the
# normalized text.
_LOCAL_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC", "StripAccents"}
# Pre-tokenizers that end every word at whitespace, and those that only split words further.
_WHITESPACE_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_WORD_SPLITTERS = _WHITESPACE_SPLITTERS | {"Digits", "Punctuation"}
# Whitespace every normalizer above keeps as whitespace. Not \x0b, \x0c, \x85, \x1c-\x1f: BertNormalizer removes
# those control characters, so "a\x0cb" is one word.
_WHITESPACE = " \t\n\r"
# BertNormalizer(handle_chinese_chars) surrounds these with spaces: each is a word of its own.
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF))
PREFIX_BUDGET_CHARS_PER_TOKEN = 8  # the first prefix: max_length * 8 characters (English takes about 5 a token)
PREFIX_GROWTH = 8


def _steps(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not section:
        return []
    if section.get("type") == "Sequence":
        return [s for part in section.get("normalizers") or section.get("pretokenizers") or [] for s in _steps(part)]
    return [section]


def cut_characters(config: dict[str, Any]) -> str:
    """The characters a text can be cut before without changing the tokens before the cut, for the tokenizer
    whose tokenizer.json is `config` (a dict); "" when that cannot be shown for this kind of tokenizer.

    The cut character c must end the word before it, after normalization, and no added token may hold it (they are
    matched in the text before it is split into words). Then tokens(P + c + R) = tokens(P) + tokens(c + R): the
    normalizer is character-local, the pre-tokenizer splits at c, and the model sees each word on its own.
    """
    normalizers = _steps(config.get("normalizer"))
    pre_tokenizers = _steps(config.get("pre_tokenizer"))
    if (
        not pre_tokenizers
        or any(s.get("type") not in _LOCAL_NORMALIZERS for s in normalizers)
        or any(s.get("type") not in _WORD_SPLITTERS for s in pre_tokenizers)
        or not any(s.get("type") in _WHITESPACE_SPLITTERS for s in pre_tokenizers)
    ):
        return ""
    cuts = set(_WHITESPACE)
    if any(s.get("type") == "BertPreTokenizer" for s in pre_tokenizers):
        cuts |= set(string.punctuation)  # each one a word of its own (isolated), and no normalizer changes it
    if any(s.get("type") == "BertNormalizer" and s.get("handle_chinese_chars", True) for s in normalizers):
        cuts |= {chr(c) for lo, hi in _CJK_RANGES for c in range(lo, hi + 1)}
    for token in config.get("added_tokens") or []:
        cuts -= set(token.get("content", ""))
    return "".join(sorted(cuts))


def _char_class(chars: str) -> str:
    """A regex character class of `chars` (sorted), as ranges."""
    parts: list[str] = []
    codes, i = [ord(c) for c in chars], 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        lo, hi = re.escape(chr(codes[i])), re.escape(chr(codes[j]))
        parts.append(lo if i == j else f"{lo}-{hi}")
        i = j + 1
    return "[" + "".join(parts) + "]"


class TextEncoder:
    """`settings`: the spec's preprocess section; the tokenizer is read from `tokenizer_path`."""

    def __init__(self, tokenizer_path: str | os.PathLike[str], settings: PreprocessSettings, output_names: Sequence[str]) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.max_length = int(settings.max_length)
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()
        self.buckets = sorted(b for b in settings.buckets if b <= self.max_length)
        if not self.buckets or self.buckets[-1] < self.max_length:
            self.buckets.append(self.max_length)
        self.max_text_bytes = int(settings.max_text_bytes)
        self.pad_id = int(settings.pad_id)
        self.text_input = settings.text_input
        self.ids_name, self.mask_name = output_names
        cuts = cut_characters(json.loads(self.tokenizer.to_str()))
        # Greedy: matches up to the last cut character of the string it is given.
        self._last_cut = re.compile(r"(?s).*" + _char_class(cuts)) if cuts else None
        self.prefix_budget = self.max_length * PREFIX_BUDGET_CHARS_PER_TOKEN

    def texts(self, arrays: Batch) -> list[str]:
        """The request's texts (RequestError for one too long or not UTF-8)."""
        return texts_of(arrays[self.text_input], self.text_input, self.max_text_bytes)

    def _prefix(self, text: str, budget: int) -> str:
        """`text` if it is within `budget` characters, else its longest prefix within the budget that ends before
        a cut character (so no word is cut), "" if there is none. A str is cut between characters, never inside
        one's UTF-8 bytes."""
        if len(text) <= budget or self._last_cut is None:
            return text
        m = self._last_cut.match(text, 0, budget + 1)  # the character just after the budget may be the cut
        return text[: m.end() - 1] if m else ""

    def _encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids of each text, truncated to max_length: the same as encoding the whole texts."""
        ids: list[list[int] | None] = [None] * len(texts)
        todo, budget = list(range(len(texts))), self.prefix_budget
        while todo:
            parts = [(i, self._prefix(texts[i], budget)) for i in todo]
            whole = {i for i, p in parts if p is texts[i]}
            parts = [(i, p) for i, p in parts if p or i in whole]  # no cut within the budget: wait for a larger one
            # A few texts are encoded on this thread: handing them to the tokenizer's thread pool costs more than
            # it saves when the cores are busy with inference anyway.
            batch = [p for _, p in parts]
            encoded = self.tokenizer.encode_batch(batch) if len(batch) >= 8 else [self.tokenizer.encode(p) for p in batch]
            for (i, _), enc in zip(parts, encoded, strict=True):
                if i in whole or len(enc.ids) >= self.max_length:
                    ids[i] = enc.ids
            todo = [i for i in todo if ids[i] is None]
            budget *= PREFIX_GROWTH
        return [i for i in ids if i is not None]  # every one found: the loop ends only then

    def encode(self, texts_per_request: Sequence[Sequence[str]]) -> list[Batch]:
        """One {ids, mask} per request, each padded to its own bucket."""
        flat = [t for texts in texts_per_request for t in texts]
        encodings = iter(self._encode_texts(flat))
        out = []
        for texts in texts_per_request:
            seqs = [next(encodings) for _ in texts]
            width = next(b for b in self.buckets if b >= max(len(s) for s in seqs))
            ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(seqs), width), dtype=np.int64)
            for row, seq in enumerate(seqs):
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            out.append({self.ids_name: ids, self.mask_name: mask})
        return out
