"""perf.inputs without a server: 'unique' variants differ from each other and from the real samples, and varied
texts keep their length, so a cache-miss measurement computes what real traffic would."""

from __future__ import annotations

import numpy as np

from perf.inputs import select, text_words

TEXTS = ["The cat sat on the warm mat today.", "Rain fell over the quiet hills all night long.",
         "Markets rose after the bank cut rates.", "She read the letter twice and smiled.", "Hi there"]


def _samples() -> list[dict]:
    return [{"text": np.array([t], dtype=object)} for t in TEXTS]


def test_unique_texts_are_distinct_and_keep_their_word_count():
    samples = _samples()
    unique = select(samples, "unique", 5000, salt=123)
    texts = [str(u["text"][0]) for u in unique]
    assert len(set(texts)) == 5000 and not set(texts) & set(TEXTS)
    long_ones = [(t, TEXTS[i % 5]) for i, t in enumerate(texts) if i % 5 != 4]
    assert all(len(t.split()) == len(orig.split()) for t, orig in long_ones)
    assert all(t.split()[0] == orig.split()[0] for t, orig in long_ones)  # only the last words change
    vocabulary = set(text_words(samples))
    assert all(w in vocabulary for t, orig in long_ones for w, o in zip(t.split(), orig.split()) if w != o)
    assert texts[4].startswith("Hi there ")  # too few words to swap: a number is appended instead


def test_unique_runs_with_different_salts_do_not_overlap():
    samples = _samples()
    first = {str(u["text"][0]) for u in select(samples, "unique", 2000, salt=1)}
    second = {str(u["text"][0]) for u in select(samples, "unique", 2000, salt=10**6)}
    assert not first & second


def test_unique_numbers_are_nudged_not_changed():
    samples = [{"x": np.linspace(0, 1, 16, dtype=np.float32), "ids": np.arange(101, 117, dtype=np.int64)}]
    unique = select(samples, "unique", 300, salt=7)
    assert len({u["x"].tobytes() + u["ids"].tobytes() for u in unique}) == 300
    assert max(abs(u["x"] - samples[0]["x"]).max() for u in unique) < 1e-5
    assert all(u["ids"][0] == 101 and u["ids"][-1] == 116 and u["ids"].shape == (16,) for u in unique)
