"""tritonforge.perf.inputs without a server: 'unique' variants differ from each other and from the real samples, and varied
texts keep their length, so a cache-miss measurement computes what real traffic would."""

from __future__ import annotations

import base64

import numpy as np

from tritonforge.perf.inputs import select, text_words

TEXTS = [
    "The cat sat on the warm mat today.",
    "Rain fell over the quiet hills all night long.",
    "Markets rose after the bank cut rates.",
    "She read the letter twice and smiled.",
    "Hi there",
]


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
    assert all(w in vocabulary for t, orig in long_ones for w, o in zip(t.split(), orig.split(), strict=True) if w != o)
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


def test_a_second_attempt_gets_inputs_the_first_never_sent(tmp_path):
    """perf_analyzer measures an unstable point again; resending the first attempt's inputs would make every
    request a cache hit (one config-search trial read 4,169 infer/s that way)."""
    from tritonforge.perf.inputs import UniqueInputs

    data = UniqueInputs(_samples(), 2000, tmp_path / "point.json")
    first, again, second = data(0), data(0), data(1)
    assert first == again and second != first

    def texts(path):
        import json

        return {e["text"]["content"][0] for e in json.loads(path.read_text())["data"]}

    # the second attempt measures with windows twice as long: twice the inputs
    assert len(texts(first)) == 2000 and len(texts(second)) == 4000 and not texts(first) & texts(second)
    assert data.last_count == 4000
    # nor does another point, sweep or search in the same process (same salt), from its first attempt
    other = UniqueInputs(_samples(), 2000, tmp_path / "other.json")(0)
    assert len(texts(other)) == 2000 and not texts(other) & (texts(first) | texts(second))


def _point(**given):
    """A PerfPoint with every measured field 1.0 unless given."""
    import dataclasses

    from tritonforge.perf.analyzer import PerfPoint

    required = [
        f.name
        for f in dataclasses.fields(PerfPoint)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return PerfPoint(**{**{name: 1.0 for name in required}, **given})


def test_a_search_trial_the_cache_answered_is_never_picked():
    from tritonforge.perf.config_search import Candidate, Trial, _best

    fast_but_cached = Trial(
        Candidate(0, (), 2, 1), _point(model="m", throughput=4169.0, p95_us=5_500.0), requests=8000, computed=400
    )
    computed = Trial(Candidate(0, (), 1, 0), _point(model="m", throughput=301.0, p95_us=80_000.0), requests=2000, computed=2000)
    assert fast_but_cached.hit_rate == 0.95 and not fast_but_cached.fits(150)
    assert computed.hit_rate == 0.0 and computed.fits(150)
    assert _best([fast_but_cached, computed], 150) is computed


def _search_result(grid_pick: float, pairs: list[tuple]):
    """A search whose grid picked a setting, then measured it against the default in `pairs`: (pick, default)
    throughputs, optionally with (pick, default) p95 in ms (80 unless given; budget 150); a default of None was
    not measured, a negative one was answered from the cache."""
    from tritonforge.perf.config_search import Candidate, SearchResult, Trial

    default, pick = Candidate(1000, (8, 16, 32), 1, 0), Candidate(0, (), 1, 0)

    def trial(c, rate, confirmation, p95_ms=80.0):
        point = None if rate is None else _point(model="m", throughput=abs(rate), p95_us=p95_ms * 1000)
        return Trial(
            c,
            point,
            default=c == default,
            confirmation=confirmation,
            requests=1000,
            computed=1000 if rate is None or rate > 0 else 100,
        )

    result = SearchResult("m", 16, 150.0, [trial(default, 289.0, False), trial(pick, grid_pick, False)])
    for k, (p, d, *p95) in enumerate(pairs):  # measured in the order p d, d p, p d
        p_p95, d_p95 = p95 or (80.0, 80.0)
        first, second = ((pick, p, p_p95), (default, d, d_p95)) if k % 2 == 0 else ((default, d, d_p95), (pick, p, p_p95))
        result.trials += [trial(first[0], first[1], True, first[2]), trial(second[0], second[1], True, second[2])]
    return result


def test_the_pick_is_confirmed_only_by_beating_the_default_in_every_fresh_pair():
    """The grid's best is a maximum over noisy readings; it counts only if it wins every pair measured after."""
    won = _search_result(301.0, [(250.0, 227.0), (240.0, 231.0), (262.0, 255.0)])
    assert [round(r, 3) for r in won.pair_ratios()] == [1.101, 1.039, 1.027] and won.pick_confirmed()
    # a drop in the machine's speed between pairs does not matter: only the pick against its neighbour does
    lost_one = _search_result(301.0, [(250.0, 227.0), (229.0, 231.0), (262.0, 255.0)])
    assert not lost_one.pick_confirmed()
    too_few = _search_result(301.0, [(250.0, 227.0), (240.0, 231.0)])
    assert not too_few.pick_confirmed()


def test_a_pick_wins_a_pair_where_the_default_breaks_the_budget_at_the_pick_s_load():
    """Pairs are measured at the pick's load: where the default cannot keep p95 within the budget there, the pick
    wins even if it serves no more; never where the pick breaks it, or the default went unmeasured or cached."""
    won = _search_result(301.0, [(250.0, 255.0, 120.0, 160.0), (240.0, 231.0), (262.0, 262.0, 140.0, 151.0)])
    assert won.pick_confirmed()
    pick_over = _search_result(301.0, [(250.0, 227.0, 151.0, 160.0), (240.0, 231.0), (262.0, 255.0)])
    unmeasured = _search_result(301.0, [(250.0, None), (240.0, 231.0), (262.0, 255.0)])
    cached = _search_result(301.0, [(250.0, -900.0, 80.0, 200.0), (240.0, 231.0), (262.0, 255.0)])
    for lost in (pick_over, unmeasured, cached):
        assert [lost.pick_wins(p, b) for p, b in lost.pairs()] == [False, True, True] and not lost.pick_confirmed()


def test_a_per_sample_scalar_is_written_with_the_dims_its_config_declares(tmp_path):
    import json

    from tritonforge.perf.inputs import write_input_json

    path = write_input_json([{"x": np.array([1.0, 2.0], np.float32), "flag": np.array(3, np.int64)}], tmp_path / "data.json")
    entry = json.loads(path.read_text())["data"][0]
    assert entry["flag"]["shape"] == [1] and entry["x"]["shape"] == [2]
    assert np.frombuffer(base64.b64decode(entry["flag"]["content"]["b64"]), "<i8").tolist() == [3]
    path = write_input_json([{"flag": np.array(3, np.int64)}], tmp_path / "plain.json", encoding="json")
    assert json.loads(path.read_text())["data"][0]["flag"] == {"content": [3], "shape": [1]}


def test_numbers_travel_as_base64_of_their_little_endian_bytes_and_texts_as_strings(tmp_path):
    """perf_analyzer's --input-data takes {"content": {"b64": ...}, "shape": [...]}: the tensor's raw bytes,
    row-major, little-endian; the integration tests send such files to the real perf_analyzer."""
    import json

    from tritonforge.perf.inputs import write_input_json

    sample = {
        "image": np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 3, 4),
        "ids": np.array([101, 7, 102], dtype=">i8"),  # big-endian in memory: written little-endian
        "mask": np.array([True, False]),
        "half": np.array([0.5, -2.0], np.float16),
        "text": np.array(["a short text"], dtype=object),
    }
    entry = json.loads(write_input_json([sample], tmp_path / "d.json").read_text())["data"][0]
    decode = lambda name, dtype: np.frombuffer(base64.b64decode(entry[name]["content"]["b64"]), dtype)  # noqa: E731
    assert np.array_equal(decode("image", "<f4"), sample["image"].ravel()) and entry["image"]["shape"] == [1, 3, 4]
    assert decode("ids", "<i8").tolist() == [101, 7, 102]
    assert decode("mask", "?").tolist() == [True, False] and decode("half", "<f2").tolist() == [0.5, -2.0]
    assert entry["text"] == {"content": ["a short text"], "shape": [1]}


def test_base64_files_are_a_fraction_of_decimal_json_at_the_same_count(tmp_path):
    """The issue's case: 20,000 requests of a 1x28x28 float32 input took 324 MB as decimal JSON."""
    from tritonforge.perf.inputs import bytes_per_request, select, write_input_json

    rng = np.random.default_rng(0)
    samples = [{"image": rng.random((1, 28, 28), dtype=np.float32)} for _ in range(4)]
    chosen = select(samples, "unique", 200, salt=5, ranges={"image": (0.0, 1.0)})
    b64 = write_input_json(chosen, tmp_path / "b64.json").stat().st_size
    decimal = write_input_json(chosen, tmp_path / "decimal.json", encoding="json").stat().st_size
    raw = 200 * 28 * 28 * 4
    assert 1.3 * raw < b64 < 1.4 * raw and decimal > 3.5 * b64  # 3.75x here; 5.1 bytes of text per byte
    assert 200 * bytes_per_request(samples) + 16 >= b64 > 199 * bytes_per_request(samples)


def test_an_input_file_over_its_bound_is_refused_naming_the_options(tmp_path):
    import pytest

    from tritonforge.perf.inputs import InputsTooLarge, check_size, fitting_count, select, write_input_json

    samples = [{"image": np.zeros((3, 224, 224), np.float32)}]  # 602 KB a request, 803 KB in base64
    fits = fitting_count(samples, 256 * 2**20)
    assert 300 < fits < 340
    check_size(samples, fits, 256 * 2**20, "model 'resnet'")
    with pytest.raises(InputsTooLarge) as refused:
        check_size(samples, 20000, 256 * 2**20, "model 'resnet' (compute)")
    message = str(refused.value)
    assert message.startswith("--input-count 20000: the input file for model 'resnet' (compute) would take about 15.")
    assert "GiB" in message and "over --max-input-bytes 256.0 MiB" in message and f"--input-count {fits} or less" in message
    # the writer itself stops at the bound and leaves no partial file
    with pytest.raises(InputsTooLarge, match="passed --max-input-bytes 2.0 MiB at request 3"):
        write_input_json(select(samples, "unique", 5, salt=1), tmp_path / "big.json", max_bytes=2 * 2**20)
    assert not (tmp_path / "big.json").exists()
