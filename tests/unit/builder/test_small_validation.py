"""A validation set too small to gate on (fewer than 32 samples) is said in the build output and the report's
notes: a 1-sample set used to pass the gate without a word."""

from __future__ import annotations

from tritonforge.builder.gate import MIN_VALIDATION_SAMPLES, small_validation_note


def test_fewer_than_32_samples_get_a_warning_naming_the_field():
    note = small_validation_note(1)
    assert note is not None and note.startswith("warning: validation.data holds 1 sample(s), fewer than 32")
    assert "100% of top-1 agreement" in note and "give more held-out samples" in note
    assert small_validation_note(MIN_VALIDATION_SAMPLES - 1) is not None
    assert small_validation_note(MIN_VALIDATION_SAMPLES) is None
