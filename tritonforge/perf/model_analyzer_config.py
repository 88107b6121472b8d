"""A Model Analyzer profile config for a built repository: what `tritonforge model-analyzer-config` writes.

Model Analyzer (PyPI `triton-model-analyzer`, written against 1.58) measures a running tritonserver in its `remote`
launch mode, the one mode that fits tritonforge's server (its local and docker modes start a tritonserver of their
own). In remote mode it still tries model configs: it loads each one through Triton's load API with the config as an
override (so the server must run with explicit model control, as `tritonforge serve` does by default), and it reads
the configs it starts from in `<model_repository>/<model>/config.pbtxt`, nothing else of the repository.

What the written config lets it try, and why:

- Model Analyzer's manual brute search (`run_config_search_disable: true`, explicit `model_config_parameters` and
  `parameters`): instance counts and the dynamic batcher's max_queue_delay are swept; max_batch_size stays the
  build's. Its automatic brute and quick searches sweep max_batch_size themselves from 1 up: with a preferred batch
  size above that, each run config is "illegal" and skipped, and both searches stop having measured nothing but the
  default config (seen with 1.58 on a build with preferred sizes [8, 16]; a quick search on a user's machine also
  went on "Skipping profile"). A warm-up sample above max_batch_size makes Triton refuse the config ("failed to run
  warmup sample"). The search bounds are written too: max_batch_size from the largest preferred, warm-up and client
  batch size up to the build's, concurrency and instance counts as asked. Quick search refuses this file as it is
  (search disabled, per-model lists); edited for one (both removed), it stays within those bounds.
- Client batch sizes (perf_analyzer `-b`) stay within each model's max_batch_size.
- The response cache is off in every profiled config (tritonforge's, in the model's settings parameter, and Triton's):
  Model Analyzer sends the same input file to every measurement, so a cache would answer everything after the first
  and the configs would be compared on cache hits. The configs it starts from (`model_analyzer_configs/`, beside the
  written config) are the built ones with the cache off, so its default config measures what the swept ones do.
- Inputs are the build's held-out samples (perf_analyzer's random data is refused by the public model's checks).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.errors import TritonforgeError
from tritonforge.perf import analyzer
from tritonforge.perf.inputs import model_samples, select, write_input_json
from tritonforge.repository.config import to_text
from tritonforge.repository.reader import Repository
from tritonforge.serving.settings import PARAMETER, PublicSettings, dumps

MODEL_ANALYZER_VERSION = "1.58.0"  # the release this config is written for and tested against
CONFIG_FILE = "config.yaml"
CONFIGS_DIR = "model_analyzer_configs"  # <model>/config.pbtxt: what Model Analyzer starts from
INPUTS_DIR = "inputs"  # <model>.json: perf_analyzer --input-data
RESULTS_DIR = "results"  # Model Analyzer's export_path
WRAPPER = "perf_analyzer"  # runs the bundled perf_analyzer with its library path
INPUT_SAMPLES = 512  # held-out samples per input file at most (perf_analyzer cycles through them)


class ModelAnalyzerConfigError(TritonforgeError):
    """A profile config that would not measure what was asked (a model that cannot be profiled, a batch size that fits
    no model, an output directory inside the repository)."""


@dataclass(frozen=True)
class Sweep:
    """What Model Analyzer tries on every profiled model."""

    batch_sizes: tuple[int, ...] = (1,)  # client batch sizes; each model keeps those within its max_batch_size
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16)
    instances: tuple[int, ...] = (1, 2)  # instance counts (of the built config's instance kind)
    delays_us: tuple[int, ...] = (0, 1000)  # dynamic batcher max_queue_delay_microseconds (models that batch)
    stability_pct: float = 15.0  # perf_analyzer's windows must agree within this (its own default, 10, rarely holds
    # on a shared CPU; Model Analyzer then measures again with more requests per window, again and again)


@dataclass(frozen=True)
class Endpoints:
    """Where the running server listens: gRPC host:port (what Model Analyzer loads models and measures through),
    its metrics URL (default port 8002 of the gRPC host), and its HTTP host:port (written only when given)."""

    grpc: str = "127.0.0.1:8001"
    metrics_url: str = ""
    http: str = ""

    @property
    def metrics(self) -> str:
        return self.metrics_url or f"http://{self.grpc.rsplit(':', 1)[0]}:8002/metrics"


@dataclass(frozen=True)
class ProfiledModel:
    """One model as Model Analyzer profiles it."""

    name: str
    max_batch_size: int  # 0: the model does not batch
    batch_sizes: tuple[int, ...]  # client batch sizes, each within max_batch_size
    concurrency: tuple[int, ...]
    instance_kind: str  # the built config's, e.g. KIND_CPU
    instances: tuple[int, ...]
    delays_us: tuple[int, ...]  # empty: the model has no dynamic batcher
    built_instances: int
    built_delay_us: int
    least_max_batch_size: int  # the smallest max_batch_size its preferred, warm-up and client batch sizes allow
    input_data: Path
    stability_pct: float = 15.0
    shapes: tuple[str, ...] = ()  # perf_analyzer --shape NAME:DIMS for inputs with dynamic dims
    config_text: str = ""  # the config.pbtxt Model Analyzer starts from

    @property
    def sweeps_config(self) -> bool:
        """False when the only config asked for is the built one: Model Analyzer then profiles its default config alone."""
        return self.instances != (self.built_instances,) or (bool(self.delays_us) and self.delays_us != (self.built_delay_us,))

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "cpu_only": self.instance_kind == "KIND_CPU",
            "parameters": {"batch_sizes": list(self.batch_sizes), "concurrency": list(self.concurrency)},
        }
        if self.sweeps_config:
            params: dict[str, Any] = {}
            if self.max_batch_size:
                params["max_batch_size"] = [self.max_batch_size]  # kept: never swept below a preferred size
            params["instance_group"] = [{"kind": self.instance_kind, "count": list(self.instances)}]
            if self.delays_us:
                params["dynamic_batching"] = {"max_queue_delay_microseconds": list(self.delays_us)}
            entry["model_config_parameters"] = params
        flags: dict[str, Any] = {"input-data": str(self.input_data), "stability-percentage": self.stability_pct}
        if self.shapes:
            flags["shape"] = list(self.shapes)
        entry["perf_analyzer_flags"] = flags
        return entry


@dataclass(frozen=True)
class ModelAnalyzerConfig:
    """A Model Analyzer `profile` config in remote mode; `to_dict` is its YAML."""

    configs_dir: Path  # model_repository: the configs Model Analyzer starts from
    results_dir: Path
    perf_analyzer_path: str
    endpoints: Endpoints
    models: tuple[ProfiledModel, ...]

    def search_bounds(self) -> dict[str, int]:
        """The automatic searches' bounds, within what every profiled model allows (unused by the brute search written
        here; they keep a search mode switched on the command line within the configs' limits)."""
        out: dict[str, int] = {}
        batching = [m for m in self.models if m.max_batch_size]
        if batching:
            least = max(m.least_max_batch_size for m in batching)
            most = min(m.max_batch_size for m in batching)
            if least <= most:
                out["run_config_search_min_model_batch_size"] = least
                out["run_config_search_max_model_batch_size"] = most
        out["run_config_search_min_concurrency"] = min(min(m.concurrency) for m in self.models)
        out["run_config_search_max_concurrency"] = max(max(m.concurrency) for m in self.models)
        out["run_config_search_min_instance_count"] = min(min(m.instances) for m in self.models)
        out["run_config_search_max_instance_count"] = max(max(m.instances) for m in self.models)
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model_repository": str(self.configs_dir),
            "triton_launch_mode": "remote",
            "client_protocol": "grpc",
            "triton_grpc_endpoint": self.endpoints.grpc,
            "triton_metrics_url": self.endpoints.metrics,
        }
        if self.endpoints.http:
            data["triton_http_endpoint"] = self.endpoints.http
        data |= {
            "perf_analyzer_path": self.perf_analyzer_path,
            "export_path": str(self.results_dir),
            "output_model_repository_path": str(self.results_dir / "output_model_repository"),
            "override_output_model_repository": True,
            "run_config_search_mode": "brute",
            "run_config_search_disable": True,
            **self.search_bounds(),
            "profile_models": {m.name: m.to_dict() for m in self.models},
        }
        # Model Analyzer resumes from a checkpoint it finds and skips every config it has measured there: one per
        # distinct config (a rebuild changes the configs' pinned version), so a changed repository is measured afresh.
        digest = hashlib.sha256(json.dumps([data, [m.config_text for m in self.models]], sort_keys=True).encode())
        data["checkpoint_directory"] = str(self.results_dir / "checkpoints" / digest.hexdigest()[:12])
        return data

    def dump(self) -> str:
        header = (
            f"# Model Analyzer (triton-model-analyzer {MODEL_ANALYZER_VERSION}) profile config, written by "
            "`tritonforge model-analyzer-config`.\n"
            "# Remote mode against the running server (explicit model control, as `tritonforge serve` runs it):\n"
            f"#   model-analyzer profile -f {self.configs_dir.parent / CONFIG_FILE}\n"
            f"# model_repository holds only the configs it starts from: the built ones with the response cache off.\n"
            "# Swept: instance counts and max_queue_delay; max_batch_size stays the build's (see\n"
            "# tritonforge/perf/model_analyzer_config.py). After the run the server keeps the last config it loaded\n"
            "# (Triton keeps a load's config override until the model's files change, through a plain load such as\n"
            "# `tritonforge reload` sends): profile on a server of its own, or unload and load the models afterwards.\n"
        )
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)


@dataclass
class Written:
    """What `write_config` wrote and what it left out."""

    path: Path
    config: ModelAnalyzerConfig
    notes: list[str] = field(default_factory=list)


def profile_config(config: mc.ModelConfig, settings: object) -> mc.ModelConfig:
    """The built config with the response cache off (tritonforge's in the settings parameter, and Triton's)."""
    out = mc.ModelConfig()
    out.CopyFrom(config)
    if isinstance(settings, PublicSettings) and settings.cache is not None:
        out.parameters[PARAMETER].string_value = dumps(replace(settings, cache=None))
    out.ClearField("response_cache")
    return out


def profiled_model(
    name: str, config: mc.ModelConfig, sweep: Sweep, input_data: Path, shapes: Sequence[str] = ()
) -> tuple[ProfiledModel, list[str]]:
    """The model as Model Analyzer may profile it under `sweep`, and notes on what was left out of the sweep."""
    notes: list[str] = []
    mbs = config.max_batch_size
    if config.platform == "ensemble":
        raise ModelAnalyzerConfigError(
            f"model '{name}' is an ensemble: Model Analyzer's brute search does not take ensembles and its quick search "
            "sweeps max_batch_size; profile its steps instead"
        )
    if len(config.instance_group) != 1:
        raise ModelAnalyzerConfigError(
            f"model '{name}': {len(config.instance_group)} instance groups; a sweep of instance counts needs exactly one"
        )
    if mbs == 0:
        sizes: tuple[int, ...] = (1,)
        if set(sweep.batch_sizes) - {1}:
            notes.append(f"{name}: does not batch (max_batch_size 0): client batch size 1 only")
    else:
        sizes = tuple(b for b in sweep.batch_sizes if b <= mbs)
        if not sizes:
            raise ModelAnalyzerConfigError(
                f"model '{name}': max_batch_size {mbs}; none of the client batch sizes {list(sweep.batch_sizes)} fits"
            )
        if len(sizes) < len(sweep.batch_sizes):
            left = sorted(set(sweep.batch_sizes) - set(sizes))
            notes.append(f"{name}: client batch sizes {left} left out: above its max_batch_size {mbs}")
    fixed = [*config.dynamic_batching.preferred_batch_size, *(w.batch_size for w in config.model_warmup), *sizes]
    group = config.instance_group[0]
    batcher = config.HasField("dynamic_batching") and mbs > 0
    return (
        ProfiledModel(
            name=name,
            max_batch_size=mbs,
            batch_sizes=sizes,
            concurrency=tuple(sweep.concurrency),
            instance_kind=mc.ModelInstanceGroup.Kind.Name(group.kind),
            instances=tuple(sweep.instances),
            delays_us=tuple(sweep.delays_us) if batcher else (),
            built_instances=group.count or 1,
            built_delay_us=config.dynamic_batching.max_queue_delay_microseconds,
            least_max_batch_size=max(fixed, default=1),
            input_data=input_data,
            stability_pct=sweep.stability_pct,
            shapes=tuple(shapes),
        ),
        notes,
    )


def default_output_dir(repo: Path) -> Path:
    """`<repo>.model_analyzer` beside the repository."""
    repo = Path(repo).absolute()
    return repo.parent / f"{repo.name}.model_analyzer"


def _chosen(repository: Repository, models: Sequence[str]) -> tuple[list[str], list[str]]:
    """The models to profile: those named (any model a build owns), else every build's public model that is not an
    ensemble; and notes on the public models left out."""
    if models:
        for name in models:
            repository.owner(name)  # raises, naming the builds, for a model no build owns
        return list(models), []
    publics = repository.builds()
    if not publics:
        raise ModelAnalyzerConfigError(f"no tritonforge build in {repository.root}; build one first")
    chosen = [m for m in publics if repository.config(m).platform != "ensemble"]
    notes = [
        f"{m}: left out: an ensemble (Model Analyzer's brute search does not take ensembles); name its steps to profile them"
        for m in publics
        if m not in chosen
    ]
    if not chosen:
        raise ModelAnalyzerConfigError(f"{repository.root}: every public model is an ensemble; name the models to profile")
    return chosen, notes


def _input_file(repo: Path, repository: Repository, model: str, path: Path) -> tuple[str, ...]:
    """Write the model's held-out samples as perf_analyzer input data; the --shape values its dynamic inputs need."""
    samples = select(model_samples(repo, model), "validation", INPUT_SAMPLES)
    write_input_json(samples, path)
    dynamic = {t.name for t in repository.config(model).input if -1 in t.dims}
    return tuple(f"{n}:{','.join(str(d) for d in samples[0][n].shape)}" for n in sorted(dynamic) if n in samples[0])


def _wrapper(path: Path) -> Path:
    """A script that runs the bundled perf_analyzer with the library path it needs (Model Analyzer takes one program)."""
    binary, lib = analyzer.find_binary(), analyzer.library_dir()
    path.write_text(
        "#!/bin/sh\n"
        "# perf_analyzer with the libraries it needs; written by `tritonforge model-analyzer-config`\n"
        f"LD_LIBRARY_PATH={shlex.quote(str(lib))}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "
        f'exec {shlex.quote(str(binary))} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def write_config(
    repo: Path,
    out_dir: Path | None = None,
    models: Sequence[str] = (),
    sweep: Sweep | None = None,
    endpoints: Endpoints | None = None,
    perf_analyzer: str | None = None,
) -> Written:
    """Write `config.yaml` with the configs, input data and perf_analyzer script it names into `out_dir` (default
    `<repo>.model_analyzer`, beside the repository: never inside it, where Triton would take a directory for a model).
    `perf_analyzer` is the program Model Analyzer runs (default: a script running the bundled one)."""
    sweep, endpoints = sweep or Sweep(), endpoints or Endpoints()
    repository = Repository(repo)
    out = (Path(out_dir) if out_dir is not None else default_output_dir(repo)).absolute()
    if out == repository.root or repository.root in out.parents:
        raise ModelAnalyzerConfigError(
            f"{out}: inside the repository {repository.root}, where Triton would take its directories for models; "
            "write it beside the repository"
        )
    names, notes = _chosen(repository, models)
    planned = []
    for name in names:  # every model checked before anything is written
        config = repository.config(name)
        model, model_notes = profiled_model(name, config, sweep, out / INPUTS_DIR / f"{name}.json")
        planned.append(replace(model, config_text=to_text(profile_config(config, repository.settings(name)))))
        notes += model_notes
    for sub in (CONFIGS_DIR, INPUTS_DIR, f"{RESULTS_DIR}/checkpoints"):
        (out / sub).mkdir(parents=True, exist_ok=True)  # Model Analyzer refuses a checkpoint dir whose parent is missing
    profiled = []
    for model in planned:
        (out / CONFIGS_DIR / model.name).mkdir(exist_ok=True)
        (out / CONFIGS_DIR / model.name / "config.pbtxt").write_text(model.config_text)
        profiled.append(replace(model, shapes=_input_file(repo, repository, model.name, model.input_data)))
    ma_config = ModelAnalyzerConfig(
        configs_dir=out / CONFIGS_DIR,
        results_dir=out / RESULTS_DIR,
        perf_analyzer_path=perf_analyzer or str(_wrapper(out / WRAPPER)),
        endpoints=endpoints,
        models=tuple(profiled),
    )
    path = out / CONFIG_FILE
    path.write_text(ma_config.dump())
    return Written(path, ma_config, notes)
