"""docs/cli.md, generated from the CLI itself: every command with its help, arguments and options, each option as
`--help` prints it (click's help record: names, value, help, default and bounds), so the reference says what
`--help` says.

    python -m tritonforge.cli.reference > docs/cli.md     (make docs)

tests/unit/cli/test_reference.py fails when docs/cli.md no longer matches.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer

from tritonforge.cli.options import VOCABULARY
from tritonforge.cli.registry import COMMANDS

COMMAND = "python -m tritonforge.cli.reference > docs/cli.md"


def _text(text: str | None) -> str:
    """Help text as Markdown, one paragraph per paragraph of the source."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text or ""))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n\n", "<br>")


def help_record(param: Any, ctx: Any) -> tuple[str, str, str]:
    """(names and value, help, default and bounds) of a parameter, as `--help` prints them."""
    names, help = param.get_help_record(ctx)
    extra = ""
    if help.endswith("]") and "[" in help:
        head, _, tail = help.rpartition("[")
        if head == "" or head.endswith("  "):
            help, extra = head.rstrip(), tail[:-1]
    return names, help, extra


def _usage(name: str, command: Any) -> str:
    pieces = [f"tritonforge {name}", "[OPTIONS]"]
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        piece = param.name.upper() + ("..." if param.nargs == -1 else "")
        pieces.append(piece if param.required else f"[{piece}]")
    if command.context_settings.get("ignore_unknown_options"):
        pieces.append("-- ARGS...")
    return " ".join(pieces)


def _table(params: list[Any], ctx: Any, heading: str) -> list[str]:
    rows = [f"| {heading} | meaning | default, bounds |", "| --- | --- | --- |"]
    for p in params:
        names, help, extra = help_record(p, ctx)
        rows.append(f"| {_cell(f'`{names}`')} | {_cell(_text(help))} | {_cell(extra)} |")
    return rows + [""]


def command_context(name: str, command: Any, parent: Any) -> Any:
    return command.context_class(command, parent=parent, info_name=name, **command.context_settings)


def _command_section(name: str, command: Any, parent: Any) -> list[str]:
    ctx = command_context(name, command, parent)
    lines = [f"## `tritonforge {name}`", "", "```", _usage(name, command), "```", "", _text(command.help), ""]
    params = command.get_params(ctx)  # the help option too
    arguments = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name == "option" and not p.hidden]
    hidden = [p for p in params if p.param_type_name == "option" and p.hidden]
    if arguments:
        lines += _table(arguments, ctx, "argument")
    lines += _table(options, ctx, "option")
    old = [f"`{o}`: now `{n}`" for o, n in getattr(command, "renamed", {}).items()]
    old += [f"`{p.opts[0]}`: {_text(p.help)}" for p in hidden]
    if old:
        lines += ["Old spellings, still accepted with a one-line notice (not in `--help`): " + "; ".join(old) + ".", ""]
    return lines


def root_context(app: typer.Typer | None = None) -> tuple[Any, Any]:
    """(the click group of `tritonforge`, its context) without parsing anything."""
    if app is None:
        from tritonforge.cli.main import app as main_app

        app = main_app
    group = typer.main.get_command(app)
    return group, group.context_class(group, info_name="tritonforge", **group.context_settings)


def render(app: typer.Typer | None = None) -> str:
    """docs/cli.md's text."""
    group, ctx = root_context(app)
    commands = {c.name: group.get_command(ctx, c.name) for c in COMMANDS}
    lines = [
        "# `tritonforge` command reference",
        "",
        f"Generated from the CLI itself by `{COMMAND}` (`make docs`): edit the help in `tritonforge/cli/`, then",
        "regenerate. `tests/unit/cli/test_reference.py` fails when this file no longer matches `tritonforge --help`.",
        "",
        _text(group.help),
        "",
        "```",
        "tritonforge [--version] [-h | --help] COMMAND [ARGS]...",
        "```",
        "",
    ]
    lines += _table([p for p in group.get_params(ctx) if not p.hidden], ctx, "option")
    lines += ["| command | what it does |", "| --- | --- |"]
    for name, command in commands.items():
        summary = _text(command.help).split("\n\n")[0]
        lines.append(f"| [`{name}`](#tritonforge-{name}) | {_cell(summary)} |")
    lines += [
        "",
        "## One vocabulary",
        "",
        "An option means the same thing in every command that takes it. Where it overlaps with perf_analyzer's, it",
        "has perf_analyzer's name, syntax and meaning, and a default that differs from perf_analyzer's says so in",
        "its help.",
        "",
        "| option | meaning |",
        "| --- | --- |",
    ]
    lines += [f"| {option} | {_cell(meaning)} |" for option, meaning in VOCABULARY]
    lines.append("")
    for name, command in commands.items():
        lines += _command_section(name, command, ctx)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
