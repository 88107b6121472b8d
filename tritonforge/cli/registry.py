"""Which commands `tritonforge` has, and where each lives (as Polygraphy's tools/registry.py keeps its tools).

A command whose module cannot be imported (an optional dependency missing) becomes an entry that says what is
missing when it is run, instead of breaking every other command. An option renamed to the CLI's one vocabulary
(tritonforge/cli/options.py) keeps its old spelling as a hidden alias that prints a one-line notice.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import typer
from typer.core import TyperCommand

from tritonforge.cli.options import deprecated
from tritonforge.errors import TritonforgeError

# A command that passes its arguments through to another program (perf_analyzer) takes unknown options.
PASS_THROUGH = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True}}


@dataclass(frozen=True)
class Command:
    """One `tritonforge` command: its name, the function that runs it, and typer's settings for it."""

    name: str
    target: str  # "module:function"
    settings: dict[str, Any] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)  # old option -> its name now


class RenamingCommand(TyperCommand):
    """A command that still takes the old spellings of its renamed options (not shown by --help), each with a
    one-line notice; `renamed` is set per command (see `register_all`)."""

    renamed: dict[str, str] = {}

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        out = []
        for i, arg in enumerate(args):
            if arg == "--":  # what follows is another program's (perf-analyzer)
                out += args[i:]
                break
            name, eq, value = arg.partition("=")
            if name in self.renamed:
                deprecated(name, self.renamed[name])
                arg = self.renamed[name] + eq + value
            out.append(arg)
        return super().parse_args(ctx, out)


COMMANDS = [
    Command("init", "tritonforge.cli.init_command:init"),
    Command("build", "tritonforge.cli.build_commands:build"),
    Command("report", "tritonforge.cli.build_commands:report"),
    Command("serve", "tritonforge.cli.serve_commands:serve"),
    Command("reload", "tritonforge.cli.serve_commands:reload"),
    Command("probe", "tritonforge.cli.serve_commands:probe"),
    Command("serving-env", "tritonforge.cli.serve_commands:serving_env"),
    Command("perf", "tritonforge.cli.perf_commands:perf", renamed={"--stability": "--stability-percentage"}),
    Command(
        "perf-search",
        "tritonforge.cli.perf_commands:perf_search",
        renamed={"--write-back": "--apply", "--no-write-back": "--no-apply"},
    ),
    Command("perf-inputs", "tritonforge.cli.perf_commands:perf_inputs", renamed={"--count": "--input-count"}),
    Command("perf-analyzer", "tritonforge.cli.perf_commands:perf_analyzer", PASS_THROUGH),
    Command(
        "model-analyzer-config",
        "tritonforge.cli.perf_commands:model_analyzer_config",
        renamed={"--stability": "--stability-percentage"},
    ),
]


class MissingCommand(TritonforgeError):
    """A command whose module could not be imported here."""


def _missing(command: Command, error: Exception):
    def run() -> None:
        raise MissingCommand(
            f"`tritonforge {command.name}` is not available here: {type(error).__name__}: {error} "
            "(pip install 'tritonforge[examples]' installs every optional dependency)"
        )

    run.__doc__ = f"(unavailable: {error})"
    return run


def register_all(app: typer.Typer) -> None:
    for command in COMMANDS:
        module, _, function = command.target.partition(":")
        try:
            fn = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as e:
            fn = _missing(command, e)
        cls = type(f"{RenamingCommand.__name__}[{command.name}]", (RenamingCommand,), {"renamed": dict(command.renamed)})
        app.command(command.name, cls=cls, **command.settings)(fn)
