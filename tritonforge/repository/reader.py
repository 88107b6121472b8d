"""One reader of the repository format: which build owns a model, what role each model plays, where its files are.

Everything that needs to know how a build lays out its models (the local server, perf, the config search, the
recheck, the benchmarks) asks `Repository` instead of deriving names from prefixes.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.errors import RepositoryError, closest
from tritonforge.repository.build_report import BuildReport, read_report
from tritonforge.repository.config import read_config
from tritonforge.repository.files import MANIFEST_NAME, TRITON_CACHE_BYTES
from tritonforge.repository.manifest import Manifest, ModelRole, Role, read_manifest
from tritonforge.serving.settings import PARAMETER, FrontSettings, PublicSettings, Settings, loads


class Repository:
    """A Triton model repository written by `tritonforge build` (models of other origin are listed, not owned)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    # ---- builds -------------------------------------------------------------------------------------
    @cached_property
    def _manifests(self) -> dict[str, Manifest]:
        out = {}
        for path in sorted(self.root.glob(f"*/{MANIFEST_NAME}")):
            manifest = read_manifest(self.root, path.parent.name)
            if manifest is not None:
                out[manifest.name] = manifest
        return out

    def builds(self) -> list[str]:
        """The public models of every build in the repository."""
        return sorted(self._manifests)

    def manifest(self, public: str) -> Manifest:
        if public not in self._manifests:
            self.require(public, public=True)
        return self._manifests[public]

    def model_names(self) -> list[str]:
        """Every model the repository holds: each directory with a config.pbtxt (hidden ones aside)."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/config.pbtxt") if not p.parent.name.startswith("."))

    def require(self, model: str, *, public: bool = False) -> str:
        """`model` if the repository holds it (with `public`: if it is a build's public model), else one
        RepositoryError that names the repository and says what it holds, with the closest name: the check every
        command that takes a model name runs first (perf, perf-inputs, report, reload)."""
        if not self.root.is_dir():
            raise RepositoryError(
                f"no model repository at {self.root}: name the directory `tritonforge build` wrote (--repo; a "
                "relative path is read from the current directory)"
            )
        held = self.model_names()
        builds = self.builds()
        if not held:
            raise RepositoryError(f"{self.root} holds no model; build one first: tritonforge build SPEC --repo {self.root}")
        if model in (builds if public else held):
            return model
        if public and model in held:
            owner = next((b for b in builds if model in self._manifests[b].roles), None)
            if owner is not None:
                raise RepositoryError(
                    f"'{model}' in {self.root} is a model of the build '{owner}', not a build's public model: "
                    f"use '{owner}' (builds: {', '.join(builds)})"
                )
            raise RepositoryError(
                f"'{model}' in {self.root} was not written by tritonforge build "
                f"(builds: {', '.join(builds) or 'none'}); build it first"
            )
        close = closest(model, builds if public else held)
        hint = f"did you mean '{close}'? " if close else ""
        public_models = ", ".join(builds) or "none"
        others = [m for m in held if m not in builds]
        listed = f"public models (what clients call): {public_models}" + (
            "" if public or not others else f"; other models: {', '.join(others)}"
        )
        kind = "tritonforge build" if public else "model"
        raise RepositoryError(f"no {kind} named '{model}' in {self.root}; {hint}{listed}")

    def owner(self, model: str) -> str:
        """The public model whose build wrote `model`."""
        for name, manifest in self._manifests.items():
            if model in manifest.roles:
                return name
        self.require(model)
        raise RepositoryError(
            f"model '{model}' in {self.root} was not written by tritonforge build (builds: {', '.join(self.builds()) or 'none'})"
        )

    def role(self, model: str) -> ModelRole:
        return self.manifest(self.owner(model)).roles[model]

    def models(self, public: str, role: Role | None = None) -> list[str]:
        """The models of a build (in publication order: compute first, the public model last), or those of one role."""
        roles = self.manifest(public).roles
        return [m for m, r in roles.items() if role is None or r.role == role]

    def rungs(self, public: str) -> list[str]:
        """The native models the public model calls, in the router's order."""
        return sorted(self.models(public, Role.RUNG), key=lambda m: self.role(m).order)

    def runner(self, public: str) -> str | None:
        """The model that runs the public model's in-process variant alone (the compute path without serving logic)."""
        return next(iter(self.models(public, Role.RUNNER)), None)

    # ---- files --------------------------------------------------------------------------------------
    def config(self, model: str) -> mc.ModelConfig:
        path = self.root / model / "config.pbtxt"
        if not path.is_file():
            self.require(model)
        return read_config(path)

    def version_dir(self, model: str) -> Path:
        """The version directory the model's config serves (a build pins exactly one)."""
        config = self.config(model)
        pinned = list(config.version_policy.specific.versions)
        if pinned:
            return self.root / model / str(pinned[-1])
        versions = sorted((int(p.name) for p in (self.root / model).iterdir() if p.name.isdigit()), reverse=True)
        if not versions:
            raise RepositoryError(f"{self.root / model}: no version directory")
        return self.root / model / str(versions[0])

    def file(self, model: str, name: str | None = None) -> Path:
        """A file of the model's version directory; by default the one its role names (the model file)."""
        name = name or self.role(model).file
        if not name:
            raise RepositoryError(f"model '{model}' has no model file")
        path = self.version_dir(model) / name
        if not path.is_file():
            raise RepositoryError(f"{path}: not found; rebuild with --force")
        return path

    def find_file(self, model: str) -> Path | None:
        """The model file of `model` if a build published it and it is still there, else None."""
        try:
            return self.file(model)
        except RepositoryError:
            return None

    def runner_file(self, public: str) -> Path:
        """The ONNX file the public model runs in-process (its last rungs' first)."""
        return self.file(public, self.role(public).file)

    def input_names(self, model: str) -> list[str]:
        return [i.name for i in self.config(model).input]

    def settings(self, model: str) -> Settings | None:
        """The serving settings a tritonforge Python-backend model carries (None for other models)."""
        parameter = self.config(model).parameters.get(PARAMETER)
        return loads(parameter.string_value, model) if parameter is not None else None

    def caches(self, model: str) -> bool:
        """True if requests to `model` can be answered by a response cache (tritonforge's or Triton's)."""
        settings = self.settings(model)
        return bool(self.config(model).response_cache.enable or (isinstance(settings, PublicSettings) and settings.cache))

    def tensors(self, model: str) -> list[dict]:
        """The inputs `model` takes, as its build declared them: name, dtype, dims and value range (or None)."""
        owner = self.owner(model)
        spec = self.report(owner).spec
        public = self.settings(owner)
        fronts = self.models(owner, Role.FRONT)  # an ensemble: its front step takes what clients send
        if model in (owner, *fronts) and fronts:
            public = self.settings(fronts[0])
        if model in (owner, *fronts) and isinstance(public, PublicSettings | FrontSettings) and public.inputs:
            return [t.to_json() for t in public.inputs]
        return [{"name": t["name"], "dtype": t["dtype"], "dims": t["shape"], "range": t.get("range")} for t in spec["inputs"]]

    def report(self, public: str) -> BuildReport:
        return read_report(self.root, public)

    def triton_cache_bytes(self, models: list[str] | None = None) -> int:
        """The response cache size the server needs for the builds of `models` (every build when None) whose
        public model enables Triton's response cache: the largest any of them asks for, 0 if none does."""
        wanted = [0]
        for public in self.builds():
            if models is None or public in models:
                parameter = self.config(public).parameters.get(TRITON_CACHE_BYTES)
                wanted.append(int(parameter.string_value) if parameter is not None else 0)
        return max(wanted)

    def beside_report(self, public: str, name: str) -> Path:
        """A file the build keeps beside its report (validation inputs, reference outputs, ...)."""
        return self.root / public / name

    def reload_order(self, public: str) -> list[str]:
        """Models to load after a rebuild, compute first and the public model last."""
        return self.models(public)

    def describe(self) -> str:
        return json.dumps({b: {m: r.role.value for m, r in self.manifest(b).roles.items()} for b in self.builds()})
