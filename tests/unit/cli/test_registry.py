"""The CLI registry: a command whose module cannot be imported is listed and says why when run; the others work."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from tritonforge.cli import registry
from tritonforge.cli.registry import Command, MissingCommand, register_all


def test_a_command_whose_import_fails_is_listed_and_explains_itself(monkeypatch):
    monkeypatch.setattr(
        registry,
        "COMMANDS",
        [
            Command("ghost", "tritonforge_no_such_module:run"),
            Command("serving-env", "tritonforge.cli.serve_commands:serving_env"),
        ],
    )
    app = typer.Typer(pretty_exceptions_enable=False)
    register_all(app)
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"])
    assert listing.exit_code == 0 and "ghost" in listing.output and "serving-env" in listing.output
    assert "unavailable: No module named 'tritonforge_no_such_module'" in listing.output
    ghost = runner.invoke(app, ["ghost"])
    assert isinstance(ghost.exception, MissingCommand) and ghost.exception.exit_code == 2
    assert "`tritonforge ghost` is not available here: ModuleNotFoundError" in str(ghost.exception)
    assert runner.invoke(app, ["serving-env", "--help"]).exit_code == 0


def test_every_registered_command_imports_here():
    app = typer.Typer()
    register_all(app)
    for command in registry.COMMANDS:
        module, _, function = command.target.partition(":")
        fn = getattr(__import__(module, fromlist=[function]), function)
        assert fn.__doc__ and not fn.__doc__.startswith("(unavailable"), command.name
