"""The build proves its repository: the staged models as Triton loads them, before anything is published.

One `ServingCheck` serves every spec of a build command: it starts one local tritonserver (explicit model
control, an empty scratch repository) and one worker in the serving environment's ONNX Runtime on first use.
For each build:

- every Python-backend model (the public model, the runner) is written to the scratch repository and loaded
  by the real server; a model Triton refuses fails the build with Triton's own reason;
- the public model answers held-out samples over gRPC (one alone, and a batch), as a client sends them, and
  each answer must equal what the served variant computes on the same model inputs in the serving runtime
  (the runtime its gate figures came from), within the spec's export tolerance; the runner likewise;
- models whose backend the local server lacks (onnxruntime, tensorrt_plan, pytorch_libtorch) are checked
  against Triton's config rules and their graph instead (tritonforge.repository.config_rules).

The report says which way each model was checked. Nothing here touches the live repository.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tritonforge import dtypes
from tritonforge.builder.serving_ort import ServingOrt
from tritonforge.errors import TritonforgeError
from tritonforge.repository.config_rules import config_problems, onnx_config_problems
from tritonforge.repository.layout import ModelDir, StagedFiles
from tritonforge.repository.manifest import Role
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec, TensorSpec

if TYPE_CHECKING:
    from tritonforge.server.process import LocalTritonServer

SKIPPED = "not checked: the build ran with --no-serving-check"


class ServingCheckError(TritonforgeError):
    """Triton refused a staged model, or the served model's answer is not what the gate measured."""


@dataclass
class ModelCheck:
    """How one model of a build was checked, and what was found."""

    model: str
    how: str  # "tritonserver" | "config rules" | "skipped"
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Probe:
    """What the public model is asked: requests as a client sends them, and the model inputs each becomes."""

    requests: list[Batch]
    model_inputs: list[Batch]


class ServingCheck:
    """The local server and the serving runtime one build command shares. `enabled=False` (no local server can
    run here): variants are gated in the build's own ONNX Runtime and no model is loaded; reports say so."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.ort: ServingOrt | None = ServingOrt() if enabled else None
        self._server: LocalTritonServer | None = None
        self._root: Path | None = None
        self._env: dict[str, str] = {}
        self._throwaway = "tritonforge-check-" + secrets.token_hex(16)

    # ---- the shared server ------------------------------------------------------------------------
    def _started(self, env: dict[str, str]):
        """The check server, started once; again only if a spec needs an environment variable it lacks."""
        from tritonforge.server.process import LocalTritonServer

        if self._server is not None and not env.items() <= self._env.items():
            self._server.stop()
            self._server.cleanup()
            self._server = None
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="tritonforge-check-"))
        if self._server is None:
            self._env = {**self._env, **env}
            self._server = LocalTritonServer(self._root, load_models=[], startup_timeout=120.0, env=self._env).start()
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server.cleanup()
            self._server = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        if self.ort is not None:
            self.ort.close()

    def __enter__(self) -> ServingCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one build -----------------------------------------------------------------------------------
    def check(self, spec: BuildSpec, models: list[ModelDir], version: int, served_file: Path, probe: Probe) -> list[ModelCheck]:
        """Check a build's staged models; raises ServingCheckError naming the model and Triton's reason."""
        if not self.enabled:
            return [ModelCheck(m.name, "skipped", SKIPPED) for m in models]
        results = []
        loadable = _served_here(models)
        for m in models:
            if m not in loadable:
                results.append(self._rules(m))
        server = self._started(_check_env(spec, self._throwaway))
        assert self._root is not None
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(server.grpc_url)
        loaded: list[str] = []
        try:
            staged = StagedFiles()  # a file the models share is copied once
            for m in loadable:
                m.write(self._root / m.name, version, staged)
                self._load(client, server, m.name)
                loaded.append(m.name)
            assert self.ort is not None
            session = self.ort.open(served_file, [t.name for t in spec.outputs], spec.serving.intra_op_threads)
            tol = spec.validation.tolerance
            for m in loadable:
                if m.role.role == Role.FRONT:  # its answers are the compute step's inputs: checked through the ensemble
                    results.append(ModelCheck(m.name, "tritonserver", f"loaded by tritonserver {_server_version(client)}"))
                    continue
                if m.role.role == Role.PUBLIC:
                    requests, inputs = probe.requests, probe.model_inputs
                else:
                    requests, inputs = probe.model_inputs, probe.model_inputs
                worst = 0.0
                for request, model_inputs in zip(requests, inputs, strict=True):
                    answer = _infer(client, m, request)
                    worst = max(worst, _agree(m.name, spec.outputs, answer, session.run(model_inputs), tol.atol, tol.rtol))
                samples = sum(len(next(iter(r.values()))) for r in requests)
                results.append(
                    ModelCheck(
                        m.name,
                        "tritonserver",
                        f"loaded by tritonserver {_server_version(client)} and answered {samples} "
                        f"held-out sample(s) in {len(requests)} request(s) as the gate measured "
                        f"(largest difference {worst:.3g}; atol {tol.atol:g}, rtol {tol.rtol:g})",
                    )
                )
        finally:
            for name in loaded:
                with contextlib.suppress(Exception):  # the scratch server goes away with the command anyway
                    client.unload_model(name)
            for m in loadable:
                shutil.rmtree(self._root / m.name, ignore_errors=True)
            client.close()
        return sorted(results, key=lambda r: [m.name for m in models].index(r.model))

    @staticmethod
    def _rules(m: ModelDir) -> ModelCheck:
        if m.config.platform == "ensemble":
            steps = ", ".join(step.model_name for step in m.config.ensemble_scheduling.step)
            return ModelCheck(m.name, "config rules", f"an ensemble of {steps}, not all of which the local server can load")
        problems = config_problems(m.config)
        model_file = m.files.get(m.role.file)
        if m.config.backend == "onnxruntime" and isinstance(model_file, Path):
            problems += onnx_config_problems(m.config, model_file)
        backend = m.config.backend or m.config.platform
        if problems:
            raise ServingCheckError(f"model '{m.name}' ({backend}) would be refused by Triton: " + "; ".join(problems))
        against = " and its graph" if m.config.backend == "onnxruntime" else ""
        return ModelCheck(
            m.name, "config rules", f"the local server has no {backend} backend: config checked against Triton's rules{against}"
        )

    @staticmethod
    def _load(client, server, name: str) -> None:
        from tritonclient.utils import InferenceServerException

        try:
            client.load_model(name)
        except InferenceServerException as e:
            reason = next((s.reason for s in server.model_states() if s.name == name and s.reason), "")
            raise ServingCheckError(f"Triton refused model '{name}': {reason or e.message()}") from None


def _served_here(models: list[ModelDir]) -> list[ModelDir]:
    """The models the local server can load, in order: Python-backend models, and ensembles of those."""
    python = {m.name for m in models if m.config.backend == "python"}
    return [
        m
        for m in models
        if m.name in python
        or (m.config.platform == "ensemble" and all(step.model_name in python for step in m.config.ensemble_scheduling.step))
    ]


def _check_env(spec: BuildSpec, throwaway: str) -> dict[str, str]:
    """What the check server needs beyond this process's environment: a Redis cache's shared secret is the
    deployment's (a Secret in the cluster), so where this environment has none the check uses a throwaway one
    (the probe bypasses the cache; an unreachable Redis is served around)."""
    cache = spec.serving.cache
    if cache.kind != "redis" or cache.redis_private:
        return {}
    if os.environ.get(cache.secret_env) or os.environ.get(f"{cache.secret_env}_FILE"):
        return {}
    return {cache.secret_env: throwaway}


def _infer(client, m: ModelDir, request: Batch) -> Batch:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    declared = {t.name: t for t in m.config.input}
    tensors = []
    for name, arr in request.items():
        wire = np.asarray(arr).reshape(len(arr), *declared[name].dims) if declared[name].HasField("reshape") else arr
        datatype = dtypes.from_numpy(wire.dtype).wire
        tensor = grpcclient.InferInput(name, list(wire.shape), datatype)
        tensor.set_data_from_numpy(wire)
        tensors.append(tensor)
    try:
        result = client.infer(m.name, tensors, parameters={"tritonforge_probe": True}, client_timeout=60)
    except InferenceServerException as e:
        raise ServingCheckError(f"model '{m.name}' answered a held-out sample with {e.status()}: {e.message()}") from None
    return {t.name: result.as_numpy(t.name) for t in m.config.output}


def _agree(model: str, outputs: list[TensorSpec], answer: Batch, expected: Batch, atol: float, rtol: float) -> float:
    """The largest difference between the served answer and the serving runtime's; raises if out of tolerance."""
    worst = 0.0
    for t in outputs:
        got, want = answer[t.name], expected[t.name]
        if got is None or got.size != want.size:
            shape = None if got is None else got.shape
            raise ServingCheckError(
                f"model '{model}' answered output '{t.name}' with shape {shape}; the served variant computes {want.shape}"
            )
        got = got.reshape(want.shape)
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        bad = diff > atol + rtol * np.abs(want.astype(np.float64))
        if bad.any():
            raise ServingCheckError(
                f"model '{model}' answered output '{t.name}' differently from the variant the "
                f"gate measured: {int(bad.sum())} of {want.size} value(s) beyond atol {atol:g}, "
                f"rtol {rtol:g} (largest difference {float(diff.max()):.3g})"
            )
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst


def _server_version(client) -> str:
    try:
        return client.get_server_metadata().version
    except Exception:
        return "?"
