"""perf_analyzer input data from a build's real samples: as they are, all unique, or a few repeated.

Samples come from the files a build leaves beside its report: `public_inputs.npz` (what clients send to a
tokenizer-fronted model: texts) or `validation_inputs.npz` (the model's own inputs). 'unique' makes every
request's bytes different (so a cache never hits); 'repeated' cycles through a handful (so it almost always does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from tritonforge.build.data import load_batches
from tritonforge.errors import TritonforgeError
from tritonforge.build.report import PUBLIC_INPUTS_NPZ, VALIDATION_NPZ
from tritonforge.repository.reader import Repository

Sample = dict[str, np.ndarray]  # one request's tensors without the batch dim
MODES = ("validation", "unique", "repeated")
WORD_SLOTS = 3  # words replaced in a text to make it unique
_RUN_SALT = int.from_bytes(os.urandom(6), "little")


def model_samples(repo: Path, model: str) -> list[Sample]:
    """Real per-request samples for `model`'s inputs, from its build's stored data."""
    repository = Repository(repo)
    public = repository.owner(model)
    base = Path(repo) / public
    names = repository.input_names(model)
    for source in (PUBLIC_INPUTS_NPZ, VALIDATION_NPZ):
        path = repository.beside_report(public, source)
        if not path.is_file():
            continue
        batches, _ = load_batches(path)
        if batches and set(batches[0]) == set(names):
            return [{n: b[n][i] for n in names} for b in batches for i in range(len(b[names[0]]))]
    raise TritonforgeError(f"no stored samples fit the inputs {names} of model '{model}' in {base}")


def _nudge(arr: np.ndarray, k: int) -> np.ndarray:
    """Floats moved by a few units in the last place, spread over the first elements, so each k gives
    distinct bytes while values change by about 1e-7 relative."""
    out = np.array(arr, copy=True)
    flat = out.reshape(-1)
    ints = flat.view(np.int32 if flat.dtype == np.float32 else np.int64 if flat.dtype == np.float64 else np.int16)
    for j in range(min(len(flat), 8)):
        ints[j] += (k >> (4 * j)) & 0xF
    return out


def text_words(samples: list[Sample]) -> list[str]:
    """The distinct short lower-case words of the samples' texts (most are one token to a word-piece tokenizer)."""
    words = set()
    for sample in samples:
        for arr in sample.values():
            if arr.dtype == object:
                for x in arr.ravel():
                    text = x.decode() if isinstance(x, bytes) else str(x)
                    words.update(w for w in text.lower().split() if w.isalpha() and len(w) <= 6)
    return sorted(words)


def _vary_text(text: str, k: int, words: list[str]) -> str:
    """`text` with its last three words replaced by words chosen by k (its base-len(words) digits), so texts keep
    their length in words and, nearly, in tokens; a text of fewer than three words, or no word list, gets " k"."""
    parts = text.split(" ")
    slots = [i for i, w in enumerate(parts) if w.isalpha()][-WORD_SLOTS:]
    if len(words) < 2 or len(slots) < WORD_SLOTS:
        return f"{text} {k}"
    for slot in slots:
        k, digit = divmod(k, len(words))
        parts[slot] = words[digit]
    return " ".join(parts)


def _vary(sample: Sample, k: int, words: list[str] = ()) -> Sample:
    """A copy of `sample` whose bytes differ for each k: texts with three words swapped (see `_vary_text`), floats
    nudged by a few ULPs, and in the first integer input (token ids) two real tokens changed (the first and last
    positions are kept), so every variant keeps the shape, and texts the length, of the real sample."""
    out, varied_int = {}, False
    for name, arr in sample.items():
        if arr.dtype == object:
            out[name] = np.array([_vary_text(x.decode() if isinstance(x, bytes) else str(x), k, words)
                                  for x in arr.ravel()], dtype=object).reshape(arr.shape)
        elif arr.dtype.kind == "f":
            out[name] = _nudge(arr, k)
        elif arr.dtype.kind in "iu" and arr.ndim == 1 and arr.size > 3 and not varied_int:
            v = arr.copy()
            v[1], v[2] = 1000 + k % 28000, 1000 + (k // 28000) % 28000
            out[name], varied_int = v, True
        else:
            out[name] = arr
    return out


def select(samples: list[Sample], mode: str, count: int, start: int = 0, salt: int | None = None) -> list[Sample]:
    """The samples perf_analyzer cycles through for `mode`. 'unique' varies every entry with a per-run salt and
    `start` offset (the salt is drawn once per process, so calls with disjoint start ranges never repeat each
    other), so no entry repeats what an earlier point sent, nor, but for a chance of about 2 * count /
    len(words)**3 for texts (3e-4 for 20,000 MiniLM texts), what an earlier run sent; varied texts keep their length."""
    if mode not in MODES:
        raise ValueError(f"inputs mode must be one of {MODES}, got {mode!r}")
    if mode == "validation":
        return samples[:count]
    if mode == "repeated":
        return samples[: max(1, min(count, len(samples)))]
    words = text_words(samples)
    # Variants of one sample must differ: k runs over a cycle of len(words)**3 for texts (2**48 otherwise).
    cycle = len(words) ** WORD_SLOTS if len(words) >= 2 else 2**48
    if salt is None:
        salt = _RUN_SALT
    n = len(samples)
    return [_vary(samples[i % n], (salt + i) % cycle, words) for i in range(start, start + count)]


# How far each further perf_analyzer attempt moves the numbering of texts drawn from the stored samples
# (benchmarks.bench_serving's short texts; unique_inputs draws each attempt's start from fresh_start instead).
RETRY_OFFSET = 10_000_000
_next_start = 0  # see fresh_start


def per_attempt(make: Callable[[int], list[Sample]], path: Path) -> Callable[[int], Path]:
    """perf_analyzer input data as a function of the attempt (see `tritonforge.perf.analyzer.measure`): the samples
    `make(attempt)` gives, written once per attempt beside `path`."""
    path, written = Path(path), {}

    def for_attempt(attempt: int) -> Path:
        if attempt not in written:
            name = path if not attempt else path.with_name(f"{path.stem}.retry{attempt}{path.suffix}")
            written[attempt] = write_input_json(make(attempt), name)
        return written[attempt]

    return for_attempt


def fresh_start(count: int) -> int:
    """The start of `count` unique samples no other caller in this process was given: two sweeps or searches in
    one process (the tests, against one server) must not send each other's inputs, which the cache would answer.
    Other processes draw another salt."""
    global _next_start
    start, _next_start = _next_start, _next_start + count
    return start


def unique_inputs(samples: list[Sample], count: int, path: Path) -> Callable[[int], Path]:
    """`count` unique samples per perf_analyzer attempt, each attempt's never sent before in this process."""
    return per_attempt(lambda attempt: select(samples, "unique", count, fresh_start(count)), path)


def _entry(arr: np.ndarray) -> dict:
    if arr.dtype == object:
        content = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel()]
    else:
        content = arr.ravel().tolist()
    return {"content": content, "shape": list(arr.shape)}


def write_input_json(samples: list[Sample], path: Path) -> Path:
    """perf_analyzer --input-data JSON: one entry per request, shapes given explicitly."""
    data = {"data": [{name: _entry(arr) for name, arr in s.items()} for s in samples]}
    Path(path).write_text(json.dumps(data))
    return Path(path)
