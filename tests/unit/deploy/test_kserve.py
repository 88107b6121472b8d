"""The KServe manifests (docker/kserve/) validate against the openAPIV3Schema of KServe v0.20.0's CRDs (kept as
data in ../shared/kserve/: no cluster runs here), and the ServingRuntime carries what the plain Deployment
(docker/k8s/triton.yaml) carries."""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import ROOT

KSERVE = ROOT / "docker" / "kserve"
# KServe's CRDs, as data: $TRITONFORGE_KSERVE_CRDS, else ../shared/kserve beside the checkout, else the workplace's
_CANDIDATES = [os.environ.get("TRITONFORGE_KSERVE_CRDS", ""), ROOT.parent / "shared" / "kserve", "/work/shared/kserve"]
CRDS = next((Path(c) for c in _CANDIDATES if c and Path(c).is_dir()), ROOT.parent / "shared" / "kserve")
MANIFESTS = sorted(KSERVE.glob("*.yaml"))
needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"skipped: KServe's CRDs are not at {CRDS}")


@cache
def _schema(kind: str, api_version: str) -> dict:
    """The openAPIV3Schema of `kind` at `api_version` from KServe's CRDs."""
    group, version = api_version.split("/")
    for path in CRDS.glob(f"{group}_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    raise AssertionError(f"no CRD for {kind} in {CRDS}")  # read once per kind: the files are 2 MB of YAML


def _errors(manifest: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(manifest["kind"], manifest["apiVersion"]))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def _load(name: str) -> dict:
    return yaml.safe_load((KSERVE / name).read_text())


@needs_crds
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_each_manifest_validates_against_kserves_crd(path: Path):
    assert _errors(yaml.safe_load(path.read_text())) == []


@needs_crds
def test_the_validation_catches_a_wrong_field():
    service = copy.deepcopy(_load("inferenceservice-serverless.yaml"))
    service["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    service["spec"]["predictor"]["model"]["modelFormat"] = {"version": "2"}  # the format's name is required
    errors = _errors(service)
    assert any(e.startswith("spec.predictor.canaryTrafficPercent:") for e in errors)
    assert any("'name' is a required property" in e for e in errors)


def test_the_runtime_carries_what_the_deployment_carries():
    runtime = _load("servingruntime.yaml")
    deployment = next(
        d for d in yaml.safe_load_all((ROOT / "docker" / "k8s" / "triton.yaml").read_text()) if d["kind"] == "Deployment"
    )
    pod = deployment["spec"]["template"]["spec"]
    container, own = runtime["spec"]["containers"][0], pod["containers"][0]
    shared = [a for a in own["args"] if not a.startswith(("--model-repository", "--http-port", "--grpc-port"))]
    assert set(shared) <= set(container["args"]) and "--model-repository=/mnt/models" in container["args"]
    assert {e["name"]: e for e in container["env"]} == {e["name"]: e for e in own["env"]}  # Redis and secrets
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["python3", "/opt/tritonforge/probe.py"] and probe[probe.index("--repo") + 1] == "/mnt/models"
    assert probe[probe.index("--http-url") + 1] == "http://127.0.0.1:8080" and "--http-port=8080" in container["args"]
    assert container["image"] == own["image"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert runtime["spec"]["volumes"] == pod["volumes"]
    assert {"name": "triton", "version": "2"}.items() <= runtime["spec"]["supportedModelFormats"][0].items()


@pytest.mark.parametrize("name", ["inferenceservice-serverless.yaml", "inferenceservice-raw.yaml"])
def test_the_services_use_the_runtime_at_a_repository_root(name):
    model = _load(name)["spec"]["predictor"]["model"]
    assert model["runtime"] == _load("servingruntime.yaml")["metadata"]["name"]
    assert model["modelFormat"]["name"] == "triton" and model["storageUri"].endswith("/model_repository")


def test_raw_mode_scales_on_tritons_queue_time():
    service = _load("inferenceservice-raw.yaml")
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    (metric,) = service["spec"]["predictor"]["autoScaling"]["metrics"]
    query = metric["external"]["metric"]["query"]
    assert "nv_inference_queue_duration_us" in query and "nv_inference_request_success" in query
