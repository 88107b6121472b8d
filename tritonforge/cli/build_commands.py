"""`tritonforge build` and `tritonforge report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tritonforge.cli.options import RepoOption
from tritonforge.cli.render import RichReporter, console, export_check_table, not_published_lines, variants_table

def build(
    specs: Annotated[list[Path], typer.Argument(help="build spec YAML files (or directories of them)")],
    repo: RepoOption = Path("model_repository"),
    force: Annotated[bool, typer.Option(help="rebuild even if nothing changed")] = False,
) -> None:
    """Export, verify and publish each spec's model into the repository (atomically; a no-op if unchanged)."""
    from tritonforge.build.pipeline import build as run_build
    from tritonforge.build.pipeline import iter_specs

    for spec_path in iter_specs(specs):
        console.rule(f"[bold]{spec_path}")
        outcome = run_build(spec_path, repo, force=force, reporter=RichReporter())
        if outcome.noop:
            console.print(f"[green]{outcome.spec.name}[/]: up to date in {outcome.repo} (no files touched)")
            continue
        if outcome.export_check:
            console.print(export_check_table(outcome.export_check))
        if outcome.report:
            console.print(variants_table(outcome.report))
            for line in not_published_lines(outcome.report):
                console.print(f"  {line}", markup=False)
        for note in outcome.notes:
            console.print(f"[yellow]note[/]: {escape(note)}")
        console.print(f"[green]{outcome.spec.name}[/]: wrote {', '.join(outcome.manifest.models)} to {outcome.repo}")


def report(
    model: Annotated[str, typer.Argument(help="public model name (the spec's name)")],
    repo: RepoOption = Path("model_repository"),
    markdown: Annotated[bool, typer.Option("--markdown", help="print the full build_report.md")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print build_report.json")] = False,
) -> None:
    """Print the build report of MODEL: every variant, its gate decision, accuracy and speed against FP32."""
    import json

    from tritonforge.build.report import read_report, to_markdown

    data = read_report(repo, model)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif markdown:
        print(to_markdown(data))
    else:
        console.print(variants_table(data))
        for line in not_published_lines(data):
            console.print(f"  {line}", markup=False)
        console.print(f"full report: {repo / model / 'build_report.md'}")


