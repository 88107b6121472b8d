"""`tritonforge build` and `tritonforge report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tritonforge.cli.options import DEFAULT_REPO, repo_option
from tritonforge.cli.render import (
    RichReporter,
    console,
    export_check_table,
    not_published_lines,
    repository_check_lines,
    variants_table,
)


def build(
    specs: Annotated[list[Path], typer.Argument(help="build spec YAML files (or directories of them)")],
    repo: Annotated[Path, repo_option("model repository to publish into (written; made if missing)")] = DEFAULT_REPO,
    force: Annotated[bool, typer.Option(help="rebuild even if nothing changed")] = False,
    serving_check: Annotated[
        bool,
        typer.Option(
            "--serving-check/--no-serving-check",
            help="load the staged models in the local tritonserver, ask the public model held-out samples, and gate "
            "and time ONNX variants in the serving environment's ONNX Runtime before publishing; turn off only "
            "where no local server can run (the report then says the repository was not checked)",
        ),
    ] = True,
) -> None:
    """Export, verify and publish each spec's model into the repository (atomically; a no-op if unchanged)."""
    from tritonforge.builder.pipeline import build as run_build
    from tritonforge.builder.pipeline import iter_specs
    from tritonforge.builder.serving_check import ServingCheck

    with ServingCheck(enabled=serving_check) as check:
        for spec_path in iter_specs(specs):
            _build_one(run_build, spec_path, repo, force, check)


def _build_one(run_build, spec_path: Path, repo: Path, force: bool, check) -> None:
    console.rule(f"[bold]{spec_path}")
    outcome = run_build(spec_path, repo, force=force, reporter=RichReporter(), check=check)
    if outcome.noop:
        console.print(f"[green]{outcome.spec.name}[/]: up to date in {outcome.repo} (no files touched)")
        for line in outcome.next_lines():
            console.print(line, markup=False, soft_wrap=True)
        return
    if not outcome.exported:
        console.print("ONNX source: the file is the FP32 reference (checked; nothing was exported to compare with it)")
    elif outcome.export_check:
        console.print(export_check_table(outcome.export_check))
    if outcome.report:
        console.print(variants_table(outcome.report))
        for line in not_published_lines(outcome.report):
            console.print(f"  {line}", markup=False)
        for line in repository_check_lines(outcome.report):
            console.print(f"  {line}", markup=False)
    for note in outcome.notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    console.print(f"[green]{outcome.spec.name}[/]: wrote {', '.join(outcome.manifest.models)} to {outcome.repo}")
    for line in outcome.next_lines():
        console.print(line, markup=False, soft_wrap=True)


def report(
    model: Annotated[str, typer.Argument(help="public model name (the spec's name)")],
    repo: Annotated[Path, repo_option("model repository to read the build report from")] = DEFAULT_REPO,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the full build_report.md")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print build_report.json")] = False,
) -> None:
    """Print the build report of MODEL: every variant, its gate decision, accuracy against FP32 and speed against
    the fastest exact-FP32 configuration."""
    from tritonforge.builder.report import to_markdown
    from tritonforge.repository.build_report import read_report

    data = read_report(repo, model)
    if as_json:
        print(data.to_json(), end="")
    elif markdown:
        print(to_markdown(data))
    else:
        console.print(variants_table(data))
        for line in not_published_lines(data):
            console.print(f"  {line}", markup=False)
        console.print(f"full report: {repo / model / 'build_report.md'}")
