"""Readiness that means "the public models answer right": each build's public model is READY and answers one
tiny inference (the probe request its build wrote, with the cache bypassed) within a timeout, and the answer
agrees with the FP32 reference its build wrote beside the request (probe_expected.json) within the gate's
tolerance: the same argmax for class scores, cosine >= the gate's min_cosine for embeddings, and for
regressions |answer - reference| <= max(atol + rtol |reference|, max_mean_rel |reference|) per value. A file
corrupted where no model checks its hash (a native model's weights) makes the probe fail, never a wrong answer
served as ready.

Triton's own /v2/health/ready answers 200 while a crashed serving-logic stub fails every request, and with
--strict-readiness=true it stays 503 for ever when a fallback rung is UNAVAILABLE by design (a plan built for
another GPU). This probe asks the question a load balancer needs answered instead.

    python3 probe.py --repo /models --http-url http://127.0.0.1:8000 [--timeout 2]

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
import math
import sys
import urllib.error
import urllib.request
from pathlib import Path

MANIFEST = "tritonforge_manifest.json"
PROBE_REQUEST = "probe_request.json"
DRAIN_FILE = "/tmp/tritonforge-draining"  # what docker/k8s/triton.yaml's preStop and the image's entrypoint write
PROBE_EXPECTED = "probe_expected.json"  # {"outputs": {name: {"kind", "shape", "reference", thresholds}}}


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


def output_margin(expected: dict, data: list) -> tuple[float, str]:
    """How far inside (>= 0: agrees) or outside (< 0) the rule an output's answer is, scaled so that outputs of
    every kind compare (the build picks the probe sample with the largest margin), and what was measured."""
    ref = expected["reference"]
    if len(data) != len(ref):
        return -math.inf, f"{len(data)} values where the reference has {len(ref)}"
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in data):
        return -math.inf, "non-finite or non-numeric values"
    kind = expected["kind"]
    if kind == "class_scores":  # the same class as the reference, row by row over the last axis
        n = expected["shape"][-1] if expected["shape"] else 1
        worst, detail = math.inf, ""
        for start in range(0, len(ref), max(n, 1)):
            r, a = ref[start : start + n], data[start : start + n]
            want, got = r.index(max(r)), a.index(max(a))
            others = [v for j, v in enumerate(a) if j != want]
            gap = (a[want] - max(others)) / (max(abs(v) for v in a) or 1.0) if others else 1.0
            margin = gap if got == want else min(gap, -1e-12)
            if margin < worst:
                worst = margin
                detail = (
                    f"class {got} where the reference has class {want}"
                    if got != want
                    else f"class {want} as the reference (margin {gap:.3g})"
                )
        return worst, detail
    if kind == "embedding":
        dot = sum(x * y for x, y in zip(ref, data, strict=True))
        norms = math.sqrt(sum(x * x for x in ref)) * math.sqrt(sum(y * y for y in data))
        cos = dot / norms if norms > 0 else float(not any(ref) and not any(data))
        need = expected["min_cosine"]
        return (cos - need) / max(1.0 - need, 1e-12), f"cosine {cos:.6f} (needs >= {need:g})"
    # regression: each value within the export tolerance or the gate's relative error
    worst, detail = math.inf, ""
    for x, y in zip(ref, data, strict=True):
        limit = max(expected["atol"] + expected["rtol"] * abs(x), expected["max_mean_rel"] * abs(x), 1e-30)
        margin = (limit - abs(y - x)) / limit
        if margin < worst:
            worst, detail = margin, f"{y:.6g} where the reference is {x:.6g} (allowed difference {limit:.3g})"
    return (worst, detail) if ref else (1.0, "no values")


def disagreements(expected: dict, answer: dict) -> list[str]:
    """The outputs of a probe answer (KServe v2 JSON) that disagree with the build's reference, each with why."""
    got = {o.get("name"): o.get("data") for o in answer.get("outputs") or []}
    out = []
    for name, e in expected["outputs"].items():
        if got.get(name) is None:
            out.append(f"output '{name}' missing from the probe answer")
            continue
        margin, detail = output_margin(e, got[name])
        if margin < 0:
            out.append(f"output '{name}' disagrees with the build's reference for the probe sample: {detail}")
    return out


def check(repo: Path, url: str, timeout: float = 2.0, drain_file: Path | None = None) -> list[str]:
    """What stops the repository's public models from answering (empty: ready); first of all, `drain_file`
    existing (the replica is draining before it stops)."""
    if drain_file is not None and Path(drain_file).exists():
        return [f"draining: {drain_file} exists (this replica is stopping)"]
    problems = []
    models = public_models(repo)
    if not models:
        if not Path(repo).is_dir():
            return [f"no model repository at {Path(repo).absolute()}: give --repo the directory the build wrote"]
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
            elif (repo / model / PROBE_EXPECTED).is_file():  # a build from before expectations: answering is all
                expected = json.loads((repo / model / PROBE_EXPECTED).read_bytes())
                problems += [f"{model}: {p}" for p in disagreements(expected, json.loads(body))]
        except (OSError, ValueError, KeyError, TypeError) as e:  # refused, timed out, not JSON, malformed
            problems.append(f"{model}: {type(e).__name__}: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("/models"))
    parser.add_argument(
        "--http-url", default="http://127.0.0.1:8000", help="Triton's HTTP endpoint: http://host:port, or host:port"
    )
    # The old name (tritonforge's --url is a gRPC host:port everywhere else): an http:// URL still works, with a notice.
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per call")
    parser.add_argument(
        "--drain-file",
        type=Path,
        default=None,
        help=f"not ready while this file exists (the replica is draining; e.g. {DRAIN_FILE})",
    )
    args = parser.parse_args(argv)
    url = args.http_url if "://" in args.http_url else f"http://{args.http_url}"
    if args.url is not None:
        if not args.url.startswith(("http://", "https://")):
            parser.error(f"--url {args.url}: --url is a gRPC host:port in tritonforge; give Triton's HTTP endpoint as --http-url")
        print("note: --url is deprecated; use --http-url", file=sys.stderr)
        url = args.url
    problems = check(args.repo, url, args.timeout, args.drain_file)
    for p in problems:
        print(f"not ready: {p}", file=sys.stderr)
    if not problems:
        print(f"ready: {', '.join(public_models(args.repo))}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
