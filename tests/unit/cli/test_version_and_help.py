"""`tritonforge --version`, and `-h` as `--help` on `tritonforge` and on every command."""

from __future__ import annotations

from typer.testing import CliRunner

from tritonforge import __version__
from tritonforge.cli.main import app
from tritonforge.cli.registry import COMMANDS

WIDE = {"COLUMNS": "250"}


def test_version_and_short_help():
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output == f"tritonforge {__version__}\n"
    assert runner.invoke(app, ["-h"], env=WIDE).output == runner.invoke(app, ["--help"], env=WIDE).output
    for command in COMMANDS:
        short = runner.invoke(app, [command.name, "-h"], env=WIDE)
        assert short.exit_code == 0, (command.name, short.output)
        assert short.output == runner.invoke(app, [command.name, "--help"], env=WIDE).output
