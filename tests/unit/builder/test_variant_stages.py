"""The variant stages' plumbing: the INT8 strategies' registry and the stage keys (the same hashes the hand-built
keys gave, so a rebuild still reuses what the last build recorded)."""

from __future__ import annotations

import json

import pytest

from tritonforge.builder.variants import stage_key
from tritonforge.builder.variants.int8_strategies import INT8_STRATEGIES, AccuracyControl, Grid, register_strategy
from tritonforge.hashing import combine
from tritonforge.spec.model import TimingSpec


def test_the_strategies_are_registered_once_by_their_spec_names():
    from typing import get_args

    from tritonforge.spec.model import Int8SearchSpec

    assert set(INT8_STRATEGIES) == set(get_args(Int8SearchSpec.model_fields["strategy"].annotation))
    assert isinstance(INT8_STRATEGIES["grid"], Grid) and isinstance(INT8_STRATEGIES["accuracy_control"], AccuracyControl)
    with pytest.raises(ValueError, match="'grid' is already registered"):
        register_strategy("grid", Grid())
    assert isinstance(INT8_STRATEGIES["grid"], Grid)


def test_a_stage_key_is_the_hash_the_hand_built_json_gave():
    timing = TimingSpec()
    cpu = {"model": "x", "cores": 2}
    files = sorted([("onnx_fp32", "a"), ("onnx_fp16", "b")])
    old = combine(
        {
            "files": json.dumps(files),
            "settings": json.dumps(timing.model_dump(mode="json"), sort_keys=True),
            "batches": str([1, 32]),
            "cpu": json.dumps(cpu, sort_keys=True),
            "threads": str(None),
        }
    )
    assert stage_key(files=files, settings=timing, batches=str([1, 32]), cpu=cpu, threads=str(None)) == old
    assert stage_key(a="x", b={"k": [1]}) == combine({"a": "x", "b": json.dumps({"k": [1]}, sort_keys=True)})


def test_a_response_cache_on_only_by_default_is_said(digits_spec):
    from tritonforge.builder.pipeline import default_cache_note
    from tritonforge.spec import load_spec

    spec = load_spec(digits_spec)
    if "cache" in spec.serving.model_fields_set:  # the example names its cache: said nowhere
        assert default_cache_note(spec) is None
    unnamed = spec.model_copy(update={"serving": type(spec.serving)()})
    assert "response cache on by default (memory, TTL 300 s)" in (default_cache_note(unnamed) or "")
    off = spec.model_copy(update={"serving": type(spec.serving)(cache={"kind": "none"})})
    assert default_cache_note(off) is None
