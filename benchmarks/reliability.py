"""The fault scenarios behind docs/reliability.md, run as what they are: the integration tests that assert them
(against the real local tritonserver, a real redis-server, the project's client), with the load scenarios run
longer, each test recording its row (what was tried, requests, failed, wrong answers) through the `reliability`
fixture.

    python -m benchmarks.reliability [--scale 10] [--out docs/reliability.md]

`make test` runs the same tests at scale 1; a row's outcome column is its test's verdict in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_TESTS = [
    "tests/integration/test_L0_rebuild_while_serving_fails_no_request.py",
    "tests/integration/test_L0_publish_killed_rolls_back.py",
    "tests/integration/test_L0_faults.py",
    "tests/integration/test_L0_rolling_restart.py",
    "tests/integration/test_L0_redis_cache_serves_only_authentic_values.py",
    "tests/integration/test_L0_serving_logic_routes_caches_and_refuses.py",
    "tests/integration/test_L0_server_lifecycle.py",
    "tests/integration/test_L0_builds_take_turns_and_disk_full.py",
    "tests/integration/test_L0_integrity.py",
]


def _outcomes(junit: Path) -> dict[str, str]:
    """pytest node id -> passed | failed | skipped, from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/")
        node = f"{path}.py::{case.get('name')}"
        verdict = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                verdict = "failed"
            elif child.tag == "skipped":
                verdict = "skipped"
        out[node] = verdict
    return out


def markdown(rows: list[dict], outcomes: dict[str, str], scale: float, seconds: float, command: str) -> str:
    lines = [
        "# Reliability",
        "",
        "Faults, rebuilds and bad input against the real local tritonserver (CPU, Python backend), a real",
        "redis-server and the project's gRPC client. Each row is recorded by the integration test that asserts it",
        f"(`make test` runs them at scale 1); this table comes from `{command}` (load scenarios x{scale:g}),",
        f"{seconds / 60:.0f} min on a 2-core VM. Wrong answers: an answer that is not its own input's (checked",
        "against a direct computation of each input), a mix of two builds, or a fault that went unnoticed.",
        "",
        "| scenario | what was tried | requests | failed | wrong | outcome | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = outcomes.get(r["test"], "?")
        notes = r["notes"].replace("|", "/")
        lines.append(f"| {r['scenario']} | {r['tried']} | {r['requests']} | {r['failed']} | {r['wrong']} | {verdict} | {notes} |")
    lost = sum(r["failed"] + r["wrong"] for r in rows)
    total = sum(r["requests"] for r in rows)
    lines += ["", f"Requests failed or answered wrongly across all scenarios: **{lost}** of {total}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="load scenarios run this many times longer")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k redis)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tf-reliability-") as tmp:
        rows_file, junit = Path(tmp) / "rows.jsonl", Path(tmp) / "junit.xml"
        env = {**os.environ, "TRITONFORGE_RELIABILITY_OUT": str(rows_file), "TRITONFORGE_LOAD_SCALE": str(args.scale)}
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
                *SCENARIO_TESTS,
                *args.pytest_args,
            ],
            cwd=ROOT,
            env=env,
        )
        seconds = time.monotonic() - started
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
        outcomes = _outcomes(junit) if junit.exists() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, outcomes, args.scale, seconds, "make reliability"))
    for r in rows:
        print(
            f"{outcomes.get(r['test'], '?'):7} {r['scenario']}: {r['requests']} requests, {r['failed']} failed, "
            f"{r['wrong']} wrong"
        )
    print(f"wrote {args.out} ({len(rows)} rows)")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
