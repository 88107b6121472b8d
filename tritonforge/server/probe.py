"""Readiness that means "the public models can answer": each build's public model is READY and answers one
tiny inference (the probe request its build wrote, with the cache bypassed), within a timeout.

Triton's own /v2/health/ready answers 200 while a crashed serving-logic stub fails every request, and with
--strict-readiness=true it stays 503 for ever when a fallback rung is UNAVAILABLE by design (a plan built for
another GPU). This probe asks the question a load balancer needs answered instead.

    python3 probe.py --repo /models --url http://127.0.0.1:8000 [--timeout 2]

Standard library only: it runs as it is inside the serving container (docker/Dockerfile.serve copies it there)
and is the exec probe of docker/compose.yaml and docker/k8s/triton.yaml. Exit 0: ready; 1: not, with the reason.

With `--drain-file PATH` it also answers "not ready" as soon as PATH exists, without asking the server: the
replica is being stopped (the Kubernetes preStop hook, or the image's entrypoint on SIGTERM, writes it) and
should leave the load balancers while Triton still answers the requests already routed to it. Readiness probes
pass it; liveness probes do not (a draining replica is not a dead one).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

MANIFEST = "tritonforge_manifest.json"
PROBE_REQUEST = "probe_request.json"
DRAIN_FILE = "/tmp/tritonforge-draining"  # what docker/k8s/triton.yaml's preStop and the image's entrypoint write


def public_models(repo: Path) -> list[str]:
    """The public model of every tritonforge build in the repository."""
    return sorted(p.parent.name for p in repo.glob(f"*/{MANIFEST}"))


def _call(url: str, timeout: float, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check(repo: Path, url: str, timeout: float = 2.0, drain_file: Path | None = None) -> list[str]:
    """What stops the repository's public models from answering (empty: ready); first of all, `drain_file`
    existing (the replica is draining before it stops)."""
    if drain_file is not None and Path(drain_file).exists():
        return [f"draining: {drain_file} exists (this replica is stopping)"]
    problems = []
    models = public_models(repo)
    if not models:
        return [f"no tritonforge build in {repo}"]
    for model in models:
        base = f"{url.rstrip('/')}/v2/models/{model}"
        try:
            status, _ = _call(f"{base}/ready", timeout)
            if status != 200:
                problems.append(f"{model}: not ready (HTTP {status})")
                continue
            request = repo / model / PROBE_REQUEST
            if not request.is_file():
                continue  # a build from before probe requests: ready is all that can be asked
            status, body = _call(f"{base}/infer", timeout, request.read_bytes())
            if status != 200:
                problems.append(f"{model}: probe inference failed (HTTP {status}): {body[:300].decode(errors='replace')}")
            elif not json.loads(body).get("outputs"):
                problems.append(f"{model}: probe inference returned no outputs")
        except (OSError, ValueError) as e:  # refused, timed out, not JSON
            problems.append(f"{model}: {type(e).__name__}: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("/models"))
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Triton's HTTP endpoint")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per call")
    parser.add_argument("--drain-file", type=Path, default=None,
                        help=f"not ready while this file exists (the replica is draining; e.g. {DRAIN_FILE})")
    args = parser.parse_args(argv)
    problems = check(args.repo, args.url, args.timeout, args.drain_file)
    for p in problems:
        print(f"not ready: {p}", file=sys.stderr)
    if not problems:
        print(f"ready: {', '.join(public_models(args.repo))}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
