"""The deployment files, checked statically (no Docker engine here): they parse, and image tags, ports, paths,
environment variables and package pins agree with each other, with pyproject and with the repository layout."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tritonforge.build.spec import CacheSpec

from helpers import ROOT

DOCKER = ROOT / "docker"
PORTS = {8000, 8001, 8002}
REPO_PATH = "/models"


def versions() -> dict[str, str]:
    out = {}
    for line in (DOCKER / "versions.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined."""
    text = (DOCKER / name).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


def k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((DOCKER / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def serve_pins() -> dict[str, Version]:
    pins = {}
    for line in (DOCKER / "requirements-serve.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = Version(next(iter(req.specifier)).version)
    return pins


@pytest.mark.parametrize("name, base", [("Dockerfile.serve", "nvcr.io/nvidia/tritonserver"),
                                        ("Dockerfile.builder", "nvcr.io/nvidia/tensorrt")])
def test_dockerfiles_use_the_pinned_tag(name, base):
    tag = versions()["TRITON_TAG"]
    instructions = dockerfile(name)
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    assert args["TRITON_TAG"] == tag
    froms = [a for i, a in instructions if i == "FROM"]
    assert froms == [f"{base}:${{TRITON_TAG}}-py3"]


def test_serving_image_runs_as_non_root_with_health_check_ports_and_repository():
    instructions = dockerfile("Dockerfile.serve")
    kinds = [i for i, _ in instructions]
    assert ("USER", "triton-server") in instructions
    assert kinds.index("USER") > max(k for k, (i, _) in enumerate(instructions) if i == "RUN")  # installs as root first
    expose = next(a for i, a in instructions if i == "EXPOSE")
    assert {int(p) for p in expose.split()} == PORTS
    health = next(a for i, a in instructions if i == "HEALTHCHECK")
    assert "/v2/health/ready" in health and "8000" in health
    copy = next(a for i, a in instructions if i == "COPY" and "model_repository" in a)
    assert copy.split()[-1] == REPO_PATH
    cmd = next(a for i, a in instructions if i == "CMD")
    assert f"--model-repository={REPO_PATH}" in cmd and "--model-control-mode=explicit" in cmd
    for port, flag in zip(sorted(PORTS), ("--http-port", "--grpc-port", "--metrics-port")):
        assert f"{flag}={port}" in cmd
    env = dict(a.split("=", 1) for i, a in instructions if i == "ENV")
    assert CacheSpec().redis_url_env in env


def test_builder_image_keeps_the_containers_tensorrt():
    text = (DOCKER / "Dockerfile.builder").read_text()
    assert "[gpu]" not in text and "pip install tensorrt" not in text  # the container's TensorRT must stay
    assert 'import tensorrt' in text


def test_compose_services_ports_env_and_gpu():
    c = compose()
    assert set(c["services"]) == {"triton", "redis", "prometheus"}
    triton = c["services"]["triton"]
    assert triton["build"]["args"]["TRITON_TAG"] == versions()["TRITON_TAG"]
    assert triton["image"].endswith(":" + versions()["TRITON_TAG"])
    assert {int(p.split(":")[0]) for p in triton["ports"]} == PORTS == {int(p.split(":")[1]) for p in triton["ports"]}
    env_name = CacheSpec().redis_url_env
    url = triton["environment"][env_name]
    assert url.startswith("redis://redis:6379")  # the compose service name
    assert triton["volumes"][0].split(":")[1] == REPO_PATH
    device = triton["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert c["services"]["redis"]["image"] == versions()["REDIS_IMAGE"]
    assert c["services"]["prometheus"]["image"] == versions()["PROMETHEUS_IMAGE"]
    assert c["services"]["prometheus"]["profiles"] == ["monitoring"]
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["triton:8002"]


def test_kubernetes_manifests_agree():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_docs()}
    deploy = docs[("Deployment", "tritonforge-triton")]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith(":" + versions()["TRITON_TAG"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(ports.values()) == PORTS
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == 8000
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    redis_service = docs[("Service", "tritonforge-redis")]
    assert env[CacheSpec().redis_url_env] == f"redis://{redis_service['metadata']['name']}:6379/0"
    assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])
    assert f"--model-repository={REPO_PATH}" in container["args"]
    service = docs[("Service", "tritonforge-triton")]
    assert service["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "http", "metrics"}
    hpa = docs[("HorizontalPodAutoscaler", "tritonforge-triton")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load(docs[("ConfigMap", "tritonforge-adapter-rules")]["data"]["config.yaml"])
    assert rules["rules"][0]["name"]["as"] == metric
    assert docs[("Deployment", "tritonforge-redis")]["spec"]["template"]["spec"]["containers"][0]["image"] == versions()["REDIS_IMAGE"]


def test_serving_pins_satisfy_pyproject_and_numpy_below_2():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    pins = serve_pins()
    assert pins["numpy"] < Version("2")
    for name, version in pins.items():
        if name in declared:
            assert version in declared[name].specifier, f"{name}=={version} does not satisfy pyproject's {declared[name]}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:  # relative: its own package
            names.add(node.module.split(".")[0])
    return names


def test_python_models_import_only_what_the_serving_image_installs():
    models = ROOT / "tritonforge" / "serving"
    pins = serve_pins()
    provided = {"numpy", "onnxruntime", "redis", "tokenizers", "triton_python_backend_utils"}
    assert provided - {"triton_python_backend_utils"} <= set(pins)
    local = {"tritonforge_serving"}  # the name these modules are copied under, beside each model.py
    for path in list(models.glob("*.py")) + list(models.glob("triton_models/*.py")):
        third_party = _imports(path) - set(sys.stdlib_module_names) - local
        assert third_party <= provided, f"{path.name} imports {third_party - provided}, not in the serving image"


def test_python_models_parse_as_the_containers_python():
    major, minor = (int(x) for x in versions()["CONTAINER_PYTHON"].split("."))
    for path in (ROOT / "tritonforge" / "serving").rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(major, minor))


def test_published_onnx_files_load_in_the_containers_onnx_runtime(digits_repo):
    """ONNX Runtime 1.19 (Triton 24.10) reads IR <= 10 and ai.onnx opsets <= 21."""
    import onnx

    paths = list(digits_repo.glob("*/*/*.onnx"))
    assert paths
    for path in paths:
        model = onnx.load(str(path), load_external_data=False)
        assert model.ir_version <= 10, path
        opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        assert opsets["ai.onnx"] <= 21, path
        used = {n.domain or "ai.onnx" for n in model.graph.node} | {"ai.onnx"}
        assert set(opsets) <= used, f"{path}: unused opset imports {set(opsets) - used}"


def test_readme_says_how_to_deploy_each():
    readme = (ROOT / "README.md").read_text()
    for needle in ("docker/Dockerfile.serve", "docker/Dockerfile.builder", "docker/compose.yaml", "docker/k8s"):
        assert needle in readme, needle
    assert re.search(r"persistence", readme, re.I)
