"""The build report (build_report.json) as one typed object: the build writes it once, every reader reads it here.

The JSON is the models' plain dump (sorted keys, two-space indent), the format builds have always written.
Every section allows fields this version does not know (they are kept and written back), and fields that older
builds did not write have the defaults those readers assumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tritonforge.errors import RepositoryError
from tritonforge.repository.files import REPORT_JSON

Number = int | float  # figures recorded as the measuring code returned them (an int stays an int)


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class VariantEntry(_Section):
    """One variant: what it is, the gate's decision, its figures and where it was published."""

    id: str
    kind: str
    runtime: str
    precision: str
    options: dict[str, Any] = Field(default_factory=dict)
    search: bool = False
    status: str = "pending"  # passed | rejected (gate) | skipped (cannot run here) | error
    reason: str = ""
    size_bytes: int = 0
    device: str = ""
    comparison: dict[str, Any] | None = None  # Comparison.to_dict(): per output figures, accuracy
    gate: dict[str, Any] | None = None  # GateResult.to_dict()
    timing: dict[str, dict[str, Any]] = Field(default_factory=dict)  # batch size -> LatencyStats dict
    speedup: dict[str, Number] = Field(default_factory=dict)  # batch size -> p50 of timing.speedups_against / this p50
    memory_mb: Number | None = None
    measured_in: str = ""
    notes: list[str] = Field(default_factory=list)
    key: str = ""
    file_sha256: str = ""
    published_as: str | None = ""  # Triton model name, when published

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def _outputs(self) -> list[dict[str, Any]]:
        return list(((self.comparison or {}).get("outputs") or {}).values())

    def per_output(self) -> dict[str, dict[str, Any]]:
        return dict((self.comparison or {}).get("outputs") or {})

    def min_cosine(self) -> float | None:
        return min((o["min_cosine"] for o in self._outputs()), default=None)

    def top1(self) -> float | None:
        return min((o["top1_agreement"] for o in self._outputs() if o.get("top1_agreement") is not None), default=None)

    def max_abs(self) -> float | None:
        return max((o["max_abs"] for o in self._outputs()), default=None)

    def mean_rel(self) -> float | None:
        return max((o["mean_rel"] for o in self._outputs()), default=None)

    def accuracy(self) -> float | None:
        """The candidate's accuracy on the labelled validation data (None without labels)."""
        return ((self.comparison or {}).get("accuracy") or {}).get("candidate")


class ExportSection(_Section):
    exporter: str
    notes: list[str] = Field(default_factory=list)
    check: dict[str, Any]  # Comparison.to_dict() of the ONNX file against the source model
    samples: int
    subnormal_weights: dict[str, int] = Field(default_factory=dict)


class HardwareSection(_Section):
    cpu: dict[str, Any]
    gpu: dict[str, Any]


class ValidationSection(_Section):
    samples: int
    origin: str


class TimingSection(_Section):
    """The spec's timing settings, the batch sizes timed and whether the last build's timings were reused."""

    enabled: bool = True
    batch_sizes: list[int]
    reused_from_previous_build: bool = False
    # the variant every speed-up is against: the fastest exact-FP32 configuration (older builds: FP32)
    speedups_against: str = "onnx_fp32"
    flushed_fp32: bool = False
    warmup_runs: int | None = None
    min_runs_per_window: int | None = None
    window_s: Number | None = None
    stable_windows: int | None = None
    stable_pct: Number | None = None
    max_windows: int | None = None


class SearchBest(_Section):
    id: str
    reason: str


class Int8SearchSection(_Section):
    enabled: bool = True
    strategy: str = "grid"  # reports from before the accuracy-control search: always the grid
    tried: list[str] = Field(default_factory=list)
    evaluations: int | None = None
    winner: str | None = None
    published_as: str | None = None
    best: SearchBest | None = None  # the closest failing point, when none passed
    path: dict[str, Any] | None = None  # the accuracy-control search's steps and rankings

    @property
    def evaluation_count(self) -> int:
        return self.evaluations if self.evaluations is not None else len(self.tried)

    def steps(self) -> list[dict[str, Any]]:
        return list((self.path or {}).get("steps") or [])


class ServingSection(_Section):
    rungs: list[str] = Field(default_factory=list)  # published models, in the router's order
    in_process_runner: str | None = None  # the variant the public model runs in-process
    cache: str | None = None
    triton_cache: str | None = None  # Triton's own response cache, if asked for: "enabled" or "not enabled: <why>"
    topology: str | None = None  # "ensemble" (one_hop builds, and builds before topologies: None)
    compute_step: str | None = None  # an ensemble's compute step: "<model>: <why>"
    cache_version: str | None = None
    probe: dict[str, Any] | None = None  # the readiness probe's sample (builds before it: none)


class CheckedModel(_Section):
    model: str
    how: str
    detail: str


class RepositoryCheckSection(_Section):
    models: list[CheckedModel]
    seconds: Number
    runtime: str


class BuildReport(_Section):
    """Everything a build decided about one model (written beside its public model as build_report.json)."""

    model: str
    tritonforge_version: str
    spec: dict[str, Any]  # the spec as built (parsed again by the recheck)
    spec_hash: str
    hardware: HardwareSection
    export: ExportSection
    validation: ValidationSection
    gate: dict[str, Any]  # the spec's gate settings
    class_score_outputs: list[str] | None = None
    output_kinds: dict[str, str] | None = None
    timing: TimingSection
    variants: list[VariantEntry]
    primary: str
    int8_search: Int8SearchSection | None = None
    notes: list[str] = Field(default_factory=list)
    reproduce: dict[str, str] = Field(default_factory=dict)  # variant id -> the command that rechecks it
    serving: ServingSection | None = None
    repository_check: RepositoryCheckSection | None = None

    def variant(self, variant_id: str) -> VariantEntry | None:
        return next((v for v in self.variants if v.id == variant_id), None)

    @property
    def primary_variant(self) -> VariantEntry:
        entry = self.variant(self.primary)
        if entry is None:
            raise RepositoryError(f"build report of '{self.model}': primary variant '{self.primary}' is not among its variants")
        return entry

    @property
    def search(self) -> Int8SearchSection | None:
        """The INT8 search's section when the search ran."""
        return self.int8_search if self.int8_search is not None and self.int8_search.enabled else None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildReport:
        return cls.model_validate(data)

    @classmethod
    def from_json(cls, text: str) -> BuildReport:
        return cls.model_validate(json.loads(text))


def read_report(repo: str | Path, model: str) -> BuildReport:
    """The build report of `model` in `repo`."""
    path = Path(repo) / model / REPORT_JSON
    if not path.is_file():
        from tritonforge.repository.reader import Repository  # the reader reads reports: imported here

        detail = f"{path} not found; build it first"
        try:
            Repository(repo).require(model, public=True)  # an unknown model: the builds there are, the closest
        except RepositoryError as e:
            detail = str(e)
        raise RepositoryError(f"no build report for model '{model}' in {repo}: {detail}")
    try:
        return BuildReport.from_json(path.read_text())
    except ValueError as e:  # not JSON, or not a report (pydantic's ValidationError is a ValueError)
        raise RepositoryError(f"{path}: unreadable build report: {e}") from None
