"""docs/cli.md is generated from the CLI (tritonforge/cli/reference.py) and says what `--help` says: a change to
an option without regenerating the reference fails here, with the command that regenerates it."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.cli.reference import COMMAND, render
from tritonforge.cli.registry import COMMANDS

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
WIDE = {"COLUMNS": "250"}


def test_reference_is_regenerated():
    assert DOC.read_text() == render(), f"docs/cli.md is out of date: run `{COMMAND}` (or `make docs`) and commit it"


def _doc_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## `tritonforge ([\w-]+)`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _doc_options(section: str) -> set[str]:
    names: set[str] = set()
    for row in re.findall(r"^\| `([^`]*)` \|", section, flags=re.M):
        names |= {t.rstrip(",") for t in row.split() if t.startswith("-")}
    return names


def _help_options(output: str) -> set[str]:
    """The option names in the rows of typer's help panels ("│ --url  -u  <str>  help ...")."""
    names: set[str] = set()
    for line in output.splitlines():
        if not line.startswith("│ -"):
            continue
        for token in line[1:].split():
            if not token.startswith("-"):
                break
            names.add(token)
    return names


def test_reference_lists_what_help_lists():
    sections = _doc_sections(DOC.read_text())
    assert list(sections) == [c.name for c in COMMANDS]
    runner = CliRunner()
    for name, section in sections.items():
        shown = runner.invoke(app, [name, "--help"], env=WIDE)
        assert shown.exit_code == 0, shown.output
        assert _help_options(shown.output) == _doc_options(section), name
    root = runner.invoke(app, ["--help"], env=WIDE).output
    assert all(c.name in root for c in COMMANDS)
    preamble = DOC.read_text().split("## One vocabulary")[0]
    assert _help_options(root) == _doc_options(preamble) == {"--version", "-h", "--help"}
