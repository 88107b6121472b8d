"""The typed build report: the JSON builds write reads back and writes out unchanged, older reports read as
before, the markdown renders from the typed object, and the file names live in one place."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest

from tritonforge.builder.report import to_markdown
from tritonforge.cli.render import not_published_lines, repository_check_lines, variants_table
from tritonforge.errors import RepositoryError
from tritonforge.repository import files
from tritonforge.repository.build_report import BuildReport, read_report
from tritonforge.repository.reader import Repository

DATA = Path(__file__).parent / "data"
REPORT = DATA / "build_report_minilm.json"  # a report a build wrote (MiniLM: INT8 accuracy-control search)


def _raw() -> dict:
    return json.loads(REPORT.read_text())


def test_a_report_round_trips_json_to_build_report_to_json_unchanged():
    text = REPORT.read_text()
    report = BuildReport.from_json(text)
    assert report.to_json() == text
    assert BuildReport.from_dict(report.to_dict()) == report


def test_the_markdown_is_the_one_builds_wrote():
    assert to_markdown(BuildReport.from_json(REPORT.read_text())) == (DATA / "build_report_minilm.md").read_text()


def test_sections_are_typed():
    report = BuildReport.from_json(REPORT.read_text())
    assert report.primary_variant.id == "onnx_fp32" and report.primary_variant.published_as == "minilm_onnx_fp32"
    assert report.timing.batch_sizes == [1, 32] and report.timing.reused_from_previous_build is False
    search = report.search
    assert search is not None and search.strategy == "accuracy_control" and search.evaluation_count == len(search.tried)
    assert search.best is not None and search.best.id == "int8_dyn_pc_x1_s4" and search.steps()
    assert report.serving is not None and report.serving.rungs == ["minilm_onnx_fp32"]
    assert report.repository_check is not None and report.repository_check.models[0].model
    fp16 = report.variant("onnx_fp16")
    assert fp16 is not None and not fp16.passed and fp16.speedup == {"1": 0.21, "32": 0.688}
    assert report.export.exporter == "dynamo" and report.validation.samples == 193


def _older() -> dict:
    """The report as builds from before the probe, the runtime label, the repository check and the search
    strategy wrote it, with fields this version does not know."""
    data = _raw()
    del data["serving"]["probe"], data["repository_check"], data["output_kinds"], data["class_score_outputs"]
    for v in data["variants"]:
        del v["measured_in"]
    data["variants"][0]["from_the_future"] = {"x": 1}
    data["something_new"] = [1, 2]
    search = data["int8_search"]
    del search["strategy"], search["evaluations"], search["path"]
    return data


def test_an_older_report_reads_with_the_defaults_its_readers_assumed():
    data = _older()
    report = BuildReport.from_dict(copy.deepcopy(data))
    assert report.repository_check is None and report.serving is not None and report.serving.probe is None
    search = report.search
    assert search is not None and search.strategy == "grid" and search.evaluation_count == len(data["int8_search"]["tried"])
    assert report.variants[1].measured_in == ""
    out = report.to_dict()  # unknown fields are kept
    assert out["something_new"] == [1, 2] and out["variants"][0]["from_the_future"] == {"x": 1}
    md = to_markdown(report)
    assert f"Strategy: grid, {len(search.tried)} gate evaluations." in md
    assert "## Repository check" not in md and "## Per output" not in md
    assert "Timing: each variant in its own runtime on AMD EPYC" in md
    assert repository_check_lines(report) == []
    assert variants_table(report).row_count == len(report.variants)
    assert any(line.startswith("onnx_fp16: rejected: ") for line in not_published_lines(report))


def test_read_report_says_what_is_missing_or_unreadable(tmp_path):
    with pytest.raises(RepositoryError, match="no build report for model 'm'"):
        read_report(tmp_path, "m")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / files.REPORT_JSON).write_text("{not json")
    with pytest.raises(RepositoryError, match="unreadable build report"):
        read_report(tmp_path, "m")
    (tmp_path / "m" / files.REPORT_JSON).write_text(json.dumps({"model": "m"}))
    with pytest.raises(RepositoryError, match="unreadable build report"):
        read_report(tmp_path, "m")
    (tmp_path / "m" / files.REPORT_JSON).write_text(REPORT.read_text())
    assert Repository(tmp_path).report("m").model == "minilm"


def test_the_probe_script_names_the_files_as_the_repository_does():
    """server/probe.py is copied alone into the serving image, so it keeps its own copies of the names."""
    from tritonforge.server import probe

    assert (probe.MANIFEST, probe.PROBE_REQUEST, probe.PROBE_EXPECTED) == (
        files.MANIFEST_NAME,
        files.PROBE_REQUEST,
        files.PROBE_EXPECTED,
    )


def test_the_repository_layer_imports_no_builder_perf_server_or_cli():
    root = Path(files.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(
                    ("tritonforge.builder", "tritonforge.perf", "tritonforge.server", "tritonforge.cli")
                ), f"{path.name} imports {name}"


def test_the_markdown_lists_only_the_files_the_build_kept():
    """calibration_inputs.npz is kept only for a spec with calibration data; the report names it only then."""
    data = _raw()
    assert data["spec"]["calibration"] and f"`{files.CALIBRATION_NPZ}`" in to_markdown(BuildReport.from_dict(data))
    data["spec"]["calibration"] = None
    text = to_markdown(BuildReport.from_dict(data))
    assert files.CALIBRATION_NPZ not in text and "calibration inputs" not in text
    assert f"Validation inputs and FP32 reference outputs are stored beside this report (`{files.VALIDATION_NPZ}`, " in text
