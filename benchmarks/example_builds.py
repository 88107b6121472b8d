"""What the benchmarks that build one example several ways share: each build's spec (the example's, with its
serving settings changed and no timing, search or calibration: the builds differ only where a benchmark says)
and the command line that builds them all into one repository, runs, prints and writes the result."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from tritonforge.builder.pipeline import build
from tritonforge.cli.render import console

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_spec(work: Path, base: str, suffix: str, serving: dict, **fields) -> Path:
    """A copy of examples/<base> as model `<base>_<suffix>`, its `serving` updated and top-level `fields` set."""
    dest = work / f"{base}_{suffix}"
    shutil.copytree(EXAMPLES / base, dest, ignore=shutil.ignore_patterns("__pycache__"))
    data = yaml.safe_load((dest / "spec.yaml").read_text())
    data["serving"] = {**data.get("serving", {}), **serving}
    data.update(name=f"{base}_{suffix}", timing={"enabled": False}, int8_search={"enabled": False}, **fields)
    data.pop("calibration", None)
    (dest / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dest / "spec.yaml"


def main(
    doc: str,
    name: str,
    specs: Callable[[Path], Iterable[Path]],
    run: Callable[[Path, int, Path], dict],
    render: Callable[[dict], object],
) -> int:
    """`--rounds`, `--work`, `--out`: build every spec of `specs(dir)` into one repository, then `run(repo, rounds,
    work)`, `render` its result (its summary) and write both to perf_results/<name>.json."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path(f"perf_results/{name}.json"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix=f"{name}."))
    repo = work / "repo"
    try:
        for spec in specs(work / "specs"):
            console.print(f"build {spec.parent.name}")
            build(spec, repo)
        out = run(repo, args.rounds, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out["summary"] = render(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    console.print(f"wrote {args.out}")
    return 0
