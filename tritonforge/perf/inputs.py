"""perf_analyzer input data from a build's real samples: as they are, all unique, or a few repeated.

Samples come from the files a build leaves beside its report: `public_inputs.npz` (what clients send to a
tokenizer-fronted model: texts) or `validation_inputs.npz` (the model's own inputs). 'unique' makes every
request's bytes different (so a cache never hits); 'repeated' cycles through a handful (so it almost always does).

Files are perf_analyzer's --input-data JSON with every number tensor in base64 (its little-endian bytes: 1.33
bytes a byte, where decimal text took about 5 for random float32), texts as strings, each bounded in bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tritonforge.errors import TritonforgeError
from tritonforge.repository.batches import load_batches
from tritonforge.repository.files import PUBLIC_INPUTS_NPZ, VALIDATION_NPZ
from tritonforge.repository.reader import Repository

Sample = dict[str, np.ndarray]  # one request's tensors without the batch dim
MODES = ("validation", "unique", "repeated")
# How many distinct samples the "repeated" mode cycles through: each misses the cache once per run at most.
REPEATED_SAMPLES = 8
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


def _nudge(arr: np.ndarray, k: int, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Floats moved by a few units in the last place, spread over the first elements, so each k gives distinct
    bytes while values change by about 1e-7 relative; an element the move would take out of `bounds` moves the
    other way."""
    out = np.array(arr, copy=True)
    flat = out.reshape(-1)
    ints = flat.view(np.int32 if flat.dtype == np.float32 else np.int64 if flat.dtype == np.float64 else np.int16)
    for j in range(min(len(flat), 8)):
        step = (k >> (4 * j)) & 0xF
        original = ints[j]
        ints[j] = original + step
        if bounds is not None and not bounds[0] <= flat[j] <= bounds[1]:
            ints[j] = original - step
            if not bounds[0] <= flat[j] <= bounds[1]:  # a range a few ULPs wide: leave it
                ints[j] = original
    return out


def _token_pool(samples: list[Sample], name: str, bounds: tuple[float, float] | None) -> np.ndarray:
    """Values a varied integer input may take: its declared range, else the values the samples hold (so an id
    never leaves the vocabulary a model was given)."""
    if bounds is not None:
        low, high = int(np.ceil(bounds[0])), int(np.floor(bounds[1]))
        return np.arange(low, high + 1, dtype=np.int64)
    values = np.unique(np.concatenate([s[name].ravel() for s in samples if name in s]))
    return values if len(values) > 1 else np.arange(0, 2, dtype=np.int64)


def text_words(samples: list[Sample]) -> list[str]:
    """The distinct short lower-case words of the samples' texts (most are one token to a word-piece tokenizer)."""
    words: set[str] = set()
    for sample in samples:
        for arr in sample.values():
            if arr.dtype == object:
                for x in arr.ravel():
                    text = x.decode() if isinstance(x, bytes) else str(x)
                    words.update(w for w in text.lower().split() if w.isalpha() and len(w) <= 6)
    return sorted(words)


def _vary_text(text: str, k: int, words: Sequence[str]) -> str:
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


def _vary(
    sample: Sample,
    k: int,
    words: Sequence[str] = (),
    ranges: dict | None = None,
    pools: dict[str, np.ndarray] | None = None,
    slots: int = 2,
) -> Sample:
    """A copy of `sample` whose bytes differ for each k: texts with three words swapped (see `_vary_text`), floats
    nudged by a few ULPs within their range, and in the first integer input with more than three values `slots`
    of them (neither the first nor the last, which are often special tokens) set from its pool (range or observed
    values), so every variant keeps the shape, and texts the length, of the real sample."""
    ranges, pools = ranges or {}, pools or {}
    out, varied_int = {}, False
    for name, arr in sample.items():
        if arr.dtype == object:
            out[name] = np.array(
                [_vary_text(x.decode() if isinstance(x, bytes) else str(x), k, words) for x in arr.ravel()], dtype=object
            ).reshape(arr.shape)
        elif arr.dtype.kind == "f":
            out[name] = _nudge(arr, k, ranges.get(name))
        elif arr.dtype.kind in "iu" and arr.size > 3 and not varied_int and name in pools:
            v = np.array(arr, copy=True)
            flat, pool = v.reshape(-1), pools[name]
            for slot in range(1, min(1 + slots, flat.size - 1)):
                k, digit = divmod(k, len(pool))
                flat[slot] = pool[digit]
            out[name], varied_int = v, True
        else:
            out[name] = arr
    return out


def _sample_hash(sample: Sample) -> bytes:
    h = hashlib.sha256()
    for name in sorted(sample):
        arr = sample[name]
        h.update(name.encode() + b"\0" + str(arr.shape).encode())
        h.update(
            b"\0".join(x if isinstance(x, bytes) else str(x).encode() for x in arr.ravel())
            if arr.dtype == object
            else np.ascontiguousarray(arr).tobytes()
        )
    return h.digest()


def select(
    samples: list[Sample],
    mode: str,
    count: int,
    start: int = 0,
    salt: int | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> list[Sample]:
    """The samples perf_analyzer cycles through for `mode`. 'unique' varies every entry with a per-run salt and
    `start` offset (the salt is drawn once per process, so calls with disjoint start ranges never repeat each
    other), keeps every value within `ranges` (an input's declared range; an integer input without one keeps to
    the values the samples hold), and checks by hashing what it made that no two entries are alike; varied texts
    keep their length. A chance of about 2 * count / len(words)**3 remains that an entry repeats one of an earlier
    run (3e-4 for 20,000 MiniLM texts)."""
    if mode not in MODES:
        raise ValueError(f"inputs mode must be one of {MODES}, got {mode!r}")
    if mode == "validation":
        return samples[:count]
    if mode == "repeated":
        return samples[: max(1, min(count, REPEATED_SAMPLES, len(samples)))]
    words = text_words(samples)
    ranges = ranges or {}
    first_int = next((n for n, a in samples[0].items() if a.dtype.kind in "iu" and a.size > 3), None)
    pools = {first_int: _token_pool(samples, first_int, ranges.get(first_int))} if first_int else {}
    # Variants of one sample must differ: k runs over a cycle of len(words)**3 for texts (2**48 otherwise).
    cycle = len(words) ** WORD_SLOTS if len(words) >= 2 else 2**48
    if salt is None:
        salt = _RUN_SALT
    n, out, seen = len(samples), [], set()
    slots = 2
    for i in range(start, start + count):
        for retry in range(64):
            k = (salt + i + retry * 7919 * count) % cycle
            sample = _vary(samples[i % n], k, words, ranges, pools, slots)
            digest = _sample_hash(sample)
            if digest not in seen:
                break
            if retry == 8:
                slots += 1  # a small pool: vary one more value
        else:
            raise TritonforgeError(
                f"cannot make {count} distinct inputs from {n} samples: the values they may take "
                f"(ranges, observed token ids) allow too few variations; give more samples"
            )
        seen.add(digest)
        out.append(sample)
    return out


_next_start = 0  # see fresh_start


def fresh_start(count: int) -> int:
    """The start of `count` unique samples no other caller in this process was given: two sweeps or searches in
    one process (the tests, against one server) must not send each other's inputs, which the cache would answer.
    Other processes draw another salt."""
    global _next_start
    start, _next_start = _next_start, _next_start + count
    return start


class UniqueInputs:
    """perf_analyzer input data as a function of the attempt (see `tritonforge.perf.analyzer.measure`): `count`
    unique samples for the first attempt and twice as many for each further one (perf_analyzer measures a point
    again with windows twice as long), at most `max_count`; each attempt's never sent before in this process
    (`fresh_start`), written once beside `path` in base64, within `max_bytes`. `last_count` is the size of the
    file last handed out (the attempt perf_analyzer kept)."""

    def __init__(
        self,
        samples: list[Sample],
        count: int,
        path: Path,
        ranges: dict[str, tuple[float, float]] | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.samples, self.count, self.path, self.ranges = samples, count, Path(path), ranges
        self.max_count, self.max_bytes = max_count, max_bytes
        self.written: dict[int, Path] = {}
        self.last_count = count

    def size(self, attempt: int) -> int:
        grown = self.count * 2**attempt
        return min(grown, self.max_count) if self.max_count else grown

    def again(self) -> UniqueInputs:
        """Inputs for the same point measured once more with windows twice as long: twice as many, none of
        them sent before."""
        path = self.path.with_name(f"{self.path.stem}.again{self.path.suffix}")
        return UniqueInputs(self.samples, self.size(1), path, self.ranges, self.max_count, self.max_bytes)

    def __call__(self, attempt: int) -> Path:
        if attempt not in self.written:
            n = self.size(attempt)
            name = self.path if not attempt else self.path.with_name(f"{self.path.stem}.retry{attempt}{self.path.suffix}")
            chosen = select(self.samples, "unique", n, fresh_start(n), ranges=self.ranges)
            self.written[attempt] = write_input_json(chosen, name, max_bytes=self.max_bytes)
        self.last_count = self.size(attempt)
        return self.written[attempt]


def model_ranges(repo: Path, model: str) -> dict[str, tuple[float, float]]:
    """The value ranges `model`'s build declared for its inputs."""
    return {t["name"]: tuple(t["range"]) for t in Repository(repo).tensors(model) if t.get("range")}


ENCODINGS = ("b64", "json")
# The default bound on one --input-data file (--max-input-bytes): perf_analyzer holds the file and the decoded
# tensors in memory, and writing it takes time the sweep spends before every point.
DEFAULT_MAX_INPUT_BYTES = 256 * 2**20


class InputsTooLarge(TritonforgeError):
    """An --input-data file would exceed its byte bound (the message names the options to change)."""


def _entry(arr: np.ndarray, encoding: str = "b64") -> dict:
    """One tensor of one request. Numbers as base64 of their little-endian bytes (perf_analyzer decodes it with
    libb64: about 1.33 bytes per byte, where decimal text takes 6 to 10 characters per float32); texts (BYTES) as
    a list of strings, which is about as compact."""
    if arr.dtype == object:
        content: list | dict = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel()]
    elif encoding == "b64":
        little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        content = {"b64": base64.b64encode(little.tobytes()).decode("ascii")}
    else:
        content = arr.ravel().tolist()
    # a per-sample scalar travels as [1] (its config has dims [1] and reshape [])
    return {"content": content, "shape": list(arr.shape) or [1]}


def entry_text(sample: Sample, encoding: str = "b64") -> str:
    """One request as it stands in the --input-data file."""
    return json.dumps({name: _entry(arr, encoding) for name, arr in sample.items()})


def bytes_per_request(samples: list[Sample], encoding: str = "b64") -> int:
    """What one request takes in the --input-data file: the largest of the first samples (varied texts keep their
    length; numbers keep their size), plus the separator."""
    return max(len(entry_text(s, encoding)) for s in samples[:32]) + 2


def file_requests(samples: list[Sample], mode: str, count: int) -> int:
    """How many requests an --input-data file of `mode` asked for `count` holds: unique files hold `count`,
    the others what `select` gives (at most the stored samples, or the few repeated ones)."""
    return count if mode == "unique" else len(select(samples, mode, count))


def fitting_count(samples: list[Sample], max_bytes: int, encoding: str = "b64") -> int:
    """How many requests an --input-data file of at most `max_bytes` holds (at least 1)."""
    return max(1, (max_bytes - 16) // bytes_per_request(samples, encoding))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_size(
    samples: list[Sample],
    count: int,
    max_bytes: int,
    what: str,
    count_option: str = "--input-count",
    bound_option: str = "--max-input-bytes",
    encoding: str = "b64",
) -> None:
    """Refuse, before anything is measured, an --input-data file of `count` requests over `max_bytes`."""
    per = bytes_per_request(samples, encoding)
    if count * per > max_bytes:
        raise InputsTooLarge(
            f"{count_option} {count}: the input file for {what} would take about {human_bytes(count * per)} "
            f"({human_bytes(per)} per request, {encoding}), over {bound_option} {human_bytes(max_bytes)}; "
            f"give {count_option} {fitting_count(samples, max_bytes, encoding)} or less, or raise {bound_option}"
        )


def write_input_json(
    samples: Iterable[Sample],
    path: Path,
    encoding: str = "b64",
    max_bytes: int | None = None,
    bound_option: str = "--max-input-bytes",
) -> Path:
    """perf_analyzer --input-data JSON: one entry per request, shapes given explicitly, numbers in base64
    (`encoding` "json": decimal lists). Written as the samples come; past `max_bytes` it stops, removes the file
    and raises InputsTooLarge naming `bound_option`."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    path = Path(path)
    written, count = 0, 0
    try:
        with open(path, "w") as f:
            written += f.write('{"data": [')
            for sample in samples:
                written += f.write((", " if count else "") + entry_text(sample, encoding))
                count += 1
                if max_bytes is not None and written > max_bytes:
                    raise InputsTooLarge(
                        f"{path.name}: the input data passed {bound_option} {human_bytes(max_bytes)} at request "
                        f"{count}; raise {bound_option} or ask for fewer requests"
                    )
            f.write("]}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def shape_arguments(sample: Sample) -> list[str]:
    """perf_analyzer's --shape values (NAME:d1,d2) for one request's tensors, without the batch dimension."""
    return [f"{name}:{','.join(str(d) for d in arr.shape)}" for name, arr in sample.items() if arr.shape]
