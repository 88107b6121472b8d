"""A build's last lines name the model to call (the public one, never a compute model) and the command to run
next, for a build that published and for one that found nothing to do."""

from __future__ import annotations

from pathlib import Path

from helpers import search_spec

from tritonforge.builder.pipeline import BuildOutcome
from tritonforge.repository.manifest import Manifest, ModelRole, Role


def _manifest() -> Manifest:
    roles = {"m_onnx_fp32": ModelRole(Role.RUNG), "m_ort": ModelRole(Role.RUNNER), "m": ModelRole(Role.PUBLIC)}
    return Manifest("m", "0", "f", "s", {}, {}, 1, roles)


def test_the_last_lines_say_what_to_call_and_what_to_run_next():
    for noop in (False, True):
        lines = BuildOutcome(search_spec({}), Path("repo"), noop, _manifest()).next_lines()
        assert len(lines) == 2
        call, nxt = lines
        assert call.startswith("call: 'm', the public model") and ".infer('m', {'x': ...})" in call
        assert "m_onnx_fp32, m_ort are its compute steps, not for clients" in call
        assert nxt.startswith("next: tritonforge serve repo") and "tritonforge reload m --url HOST:8001" in nxt


def test_an_onnx_source_gets_no_table_comparing_the_file_with_itself(capsys):
    from tritonforge.builder.sources import SOURCES
    from tritonforge.cli.build_commands import _build_one

    assert not SOURCES["onnx"].exports and all(s.exports for k, s in SOURCES.items() if k != "onnx")
    check = {"atol": 1e-4, "rtol": 1e-3, "outputs": {}}
    for exported in (True, False):
        outcome = BuildOutcome(search_spec({}), Path("repo"), False, _manifest(), None, check, "none", exported=exported)
        _build_one(lambda *a, outcome=outcome, **k: outcome, Path("spec.yaml"), Path("repo"), False, None)
        out = capsys.readouterr().out
        assert ("ONNX FP32 vs source model" in out) == exported
        assert ("ONNX source: the file is the FP32 reference" in out) != exported
