"""One ONNX Runtime session-options factory, in the serving package: the build's sessions, the serving
environment's worker and the served rungs all take the same settings."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from tritonforge.serving.ort_options import session_options


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_options_take_the_intra_op_threads_and_one_inter_op_thread(threads):
    options = session_options(threads)
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.log_severity_level == 3


def test_the_build_and_the_server_use_the_factory(monkeypatch, tmp_path):
    """The build's OrtModel and the serving runner's session() both ask the factory (no process started)."""
    from tritonforge.builder.runtimes import onnxruntime as build_ort
    from tritonforge.serving import ort_options, runner

    asked: list[int] = []

    def recording(intra_op_threads: int = 0) -> object:
        asked.append(intra_op_threads)
        return session_options(intra_op_threads)

    class _Session:
        def __init__(self, path: str, options: object, providers: list) -> None:
            self.options = options

        def get_inputs(self) -> list:
            return []

        def get_outputs(self) -> list:
            return []

    monkeypatch.setattr(ort, "InferenceSession", _Session)
    monkeypatch.setattr(build_ort, "session_options", recording)
    monkeypatch.setattr(ort_options, "session_options", recording)
    assert build_ort.OrtModel(tmp_path / "m.onnx", threads=2).session.options.inter_op_num_threads == 1
    assert runner.session(tmp_path / "m.onnx", 5).options.inter_op_num_threads == 1
    assert asked == [2, 5]
