"""The deployment files, checked statically (no Docker engine here): they parse, and image tags, ports, paths,
environment variables and package pins agree with each other, with pyproject and with the repository layout."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from helpers import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

from tritonforge.spec import CacheSpec

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


SERVING_REQUIREMENTS = ROOT / "tritonforge" / "serving" / "requirements.txt"
PROBE = ["python3", "/opt/tritonforge/probe.py", "--repo", REPO_PATH, "--http-url", "http://127.0.0.1:8000", "--timeout", "6"]
DRAIN_FILE = "/tmp/tritonforge-draining"  # a draining replica's readiness fails while Triton still answers
READINESS = [*PROBE, "--drain-file", DRAIN_FILE]
ENTRYPOINT = DOCKER / "serve-entrypoint.sh"


def triton_flag(args: list[str] | str, name: str) -> str:
    """The value of `--name=value` among Triton's arguments."""
    items = args if isinstance(args, list) else json.loads(args)
    return next(a.split("=", 1)[1] for a in items if a.startswith(f"--{name}="))


def seconds(duration: str | int) -> float:
    """A compose duration ("50s", "1m30s") or a number of seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def serve_pins() -> dict[str, Version]:
    pins = {}
    for line in SERVING_REQUIREMENTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = Version(next(iter(req.specifier)).version)
    return pins


@pytest.mark.parametrize(
    "name, base", [("Dockerfile.serve", "nvcr.io/nvidia/tritonserver"), ("Dockerfile.builder", "nvcr.io/nvidia/tensorrt")]
)
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
    assert ("USER", "1000") in instructions  # the NGC image's triton-server
    assert kinds.index("USER") > max(k for k, (i, _) in enumerate(instructions) if i == "RUN")  # installs as root first
    expose = next(a for i, a in instructions if i == "EXPOSE")
    assert {int(p) for p in expose.split()} == PORTS
    health = next(a for i, a in instructions if i == "HEALTHCHECK")
    assert json.loads(health.split("CMD", 1)[1]) == READINESS  # the public models answer, and it is not draining
    copies = {a.split()[-1]: a.split()[-2] for i, a in instructions if i == "COPY"}
    assert copies[REPO_PATH] == "model_repository"
    assert copies["/opt/tritonforge/probe.py"] == "tritonforge/server/probe.py"
    assert copies["/opt/tritonforge/requirements.txt"] == SERVING_REQUIREMENTS.relative_to(ROOT).as_posix()
    assert "-r /opt/tritonforge/requirements.txt" in next(a for i, a in instructions if i == "RUN")
    cmd = next(a for i, a in instructions if i == "CMD")
    assert f"--model-repository={REPO_PATH}" in cmd and "--model-control-mode=explicit" in cmd
    assert "--strict-readiness=false" in cmd  # a rung that cannot load on this GPU must not keep it unready
    for port, flag in zip(sorted(PORTS), ("--http-port", "--grpc-port", "--metrics-port"), strict=True):
        assert f"{flag}={port}" in cmd
    env = dict(kv.split("=", 1) for i, a in instructions if i == "ENV" for kv in shlex.split(a))
    assert CacheSpec().redis_url_env in env
    # drained on SIGTERM: the entrypoint writes the file the health check reads, then stops Triton
    assert json.loads(next(a for i, a in instructions if i == "ENTRYPOINT")) == ["/opt/tritonforge/entrypoint.sh"]
    assert copies["/opt/tritonforge/entrypoint.sh"] == ENTRYPOINT.relative_to(ROOT).as_posix()
    assert env["TRITONFORGE_DRAIN_FILE"] == DRAIN_FILE and env["TRITONFORGE_DRAIN_SECONDS"] == "0"
    assert int(triton_flag(cmd, "exit-timeout-secs")) == 30


def test_the_entrypoint_drains_and_the_readiness_probe_reads_its_file(tmp_path):
    from tritonforge.server import probe

    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh\n") and os.access(ENTRYPOINT, os.X_OK)  # COPY keeps it; --chmod too
    assert f"TRITONFORGE_DRAIN_FILE:-{DRAIN_FILE}" in text and probe.DRAIN_FILE == DRAIN_FILE
    assert 'tritonserver "$@" &' in text and 'kill -TERM "$server"' in text and "trap drain TERM" in text
    drain = tmp_path / "draining"
    # the file alone answers "not ready": no server is asked (none here; the URL would refuse)
    assert probe.check(tmp_path, "http://127.0.0.1:9", drain_file=drain) == [f"no tritonforge build in {tmp_path}"]
    drain.touch()
    assert probe.check(tmp_path, "http://127.0.0.1:9", drain_file=drain) == [
        f"draining: {drain} exists (this replica is stopping)"
    ]
    assert probe.main(["--repo", str(tmp_path), "--drain-file", str(drain)]) == 1


def test_builder_image_keeps_the_containers_tensorrt():
    text = (DOCKER / "Dockerfile.builder").read_text()
    assert "[gpu]" not in text and "pip install tensorrt" not in text  # the container's TensorRT must stay
    assert "import tensorrt" in text


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
    assert triton["healthcheck"]["test"] == ["CMD", *READINESS]
    # stopped with a drain (the image's entrypoint) and Triton's exit timeout within the grace period
    exit_timeout = int(triton_flag(next(a for i, a in dockerfile("Dockerfile.serve") if i == "CMD"), "exit-timeout-secs"))
    drain = float(triton["environment"]["TRITONFORGE_DRAIN_SECONDS"])
    assert drain >= 5 and seconds(triton["stop_grace_period"]) > drain + exit_timeout
    assert "entrypoint" not in triton and "command" not in triton  # the image's drain-first entrypoint runs
    redis = c["services"]["redis"]
    assert redis["image"] == versions()["REDIS_IMAGE"]
    # Redis: a password from a secret file, a memory cap that evicts, on an internal network, not on the host
    assert "ports" not in redis and redis["networks"] == ["cache"] and c["networks"]["cache"]["internal"] is True
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "/run/secrets/redis_password" in command
    assert "--maxmemory 1gb" in command and "--maxmemory-policy allkeys-lru" in command
    assert set(triton["secrets"]) == {"redis_password", "cache_secret"} == set(c["secrets"])
    assert triton["environment"][f"{CacheSpec().password_env}_FILE"] == "/run/secrets/redis_password"
    assert triton["environment"][f"{CacheSpec().secret_env}_FILE"] == "/run/secrets/cache_secret"
    assert all(set(v) == {"file"} and v["file"].startswith("./secrets/") for v in c["secrets"].values())
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
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        expected = READINESS if probe == "readinessProbe" else PROBE  # draining is not dead: liveness ignores it
        assert container[probe]["exec"]["command"] == expected, probe
        assert container[probe]["timeoutSeconds"] > 6  # the probe's own timeout per call fits inside
    # a rollout drains each pod before Triton stops: preStop makes readiness fail (the drain file), waits while
    # the endpoints drop the pod, then SIGTERM; the grace period covers the wait and Triton's exit timeout
    pod = deploy["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[:2] == ["sh", "-c"]
    script = pre_stop[2]
    assert f"touch {DRAIN_FILE} && sleep" in script
    wait = int(re.fullmatch(r".*&& sleep (\d+)", script).group(1))
    readiness = container["readinessProbe"]
    assert wait > readiness["periodSeconds"] * readiness["failureThreshold"]  # readiness has failed before SIGTERM
    exit_timeout = int(triton_flag(container["args"], "exit-timeout-secs"))
    assert pod["terminationGracePeriodSeconds"] > wait + exit_timeout
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "--strict-readiness=false" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secrets[CacheSpec().password_env]["name"] == "tritonforge-redis"
    assert secrets[CacheSpec().secret_env]["name"] == "tritonforge-cache"
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
    redis = docs[("Deployment", "tritonforge-redis")]["spec"]["template"]["spec"]["containers"][0]
    assert redis["image"] == versions()["REDIS_IMAGE"]
    assert redis["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "tritonforge-redis", "key": "password"}
    assert redis["args"][:3] == ["redis-server", "--requirepass", "$(REDIS_PASSWORD)"]
    assert "--maxmemory" in redis["args"] and "allkeys-lru" in redis["args"]
    policy = docs[("NetworkPolicy", "tritonforge-redis")]["spec"]
    assert policy["podSelector"]["matchLabels"] == docs[("Service", "tritonforge-redis")]["spec"]["selector"]
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]


def test_no_secret_is_written_in_a_deployment_file():
    for path in [*DOCKER.rglob("*.yaml"), *DOCKER.glob("Dockerfile.*")]:
        text = path.read_text()
        assert not re.search(r"(password|secret)\s*[:=]\s*[\"']?[A-Za-z0-9+/]{12,}", text, re.I), path


def test_kubernetes_manifests_validate_against_the_kubernetes_schemas():
    import kubernetes_validate

    for doc in k8s_docs():
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_one_requirements_file_makes_both_serving_environments_and_pins_numpy_below_2():
    """The container installs the file the local server's environment is made from; both pin numpy<2 (Triton
    2.51's Python backend returns empty tensors with numpy 2)."""
    from tritonforge.server.environment import REQUIREMENTS

    assert REQUIREMENTS == SERVING_REQUIREMENTS
    copies = {a.split()[-1]: a.split()[-2] for i, a in dockerfile("Dockerfile.serve") if i == "COPY"}
    assert ROOT / copies["/opt/tritonforge/requirements.txt"] == REQUIREMENTS
    pins = serve_pins()
    assert pins["numpy"] < Version("2")
    assert {"numpy", "onnxruntime", "redis", "tokenizers"} <= set(pins)


def test_the_project_environment_is_on_numpy_2_and_protobuf_5_or_later():
    """What the user's stack runs: no upper pin that only the server needs reaches this environment."""
    from importlib.metadata import version

    assert Version(version("numpy")) >= Version("2"), "make venv installs numpy 2 now"
    assert Version(version("protobuf")) >= Version("5")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        assert not any(spec.operator in ("<", "<=", "==") for spec in requirement.specifier), requirement


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


def test_the_deploy_guide_says_how_to_deploy_each():
    readme = (ROOT / "docs" / "deploy.md").read_text()
    for needle in ("docker/Dockerfile.serve", "docker/Dockerfile.builder", "docker/compose.yaml", "docker/k8s"):
        assert needle in readme, needle
    assert re.search(r"persistence", readme, re.I)


def test_the_probe_says_when_the_repository_is_not_there(tmp_path):
    from tritonforge.server import probe

    problems = probe.check(tmp_path / "elsewhere", "http://127.0.0.1:9")
    assert problems == [f"no model repository at {tmp_path / 'elsewhere'}: give --repo the directory the build wrote"]
