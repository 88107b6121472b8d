"""The `tritonforge` command: a thin layer that registers each command from its module and renders errors.
Errors a user can fix exit with code 2."""

from __future__ import annotations

import errno
import sys
from typing import Annotated

import typer

from tritonforge import __version__
from tritonforge.cli.registry import register_all
from tritonforge.cli.render import err_console
from tritonforge.errors import TritonforgeError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Take a trained model to a fast, verified Triton Inference Server deployment.",
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits them
)


def _print_version(value: bool) -> None:
    if value:
        print(f"tritonforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print tritonforge's version and exit")
    ] = False,
) -> None:
    pass


register_all(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except TritonforgeError as e:
        err_console.print("[red]error:[/]", end=" ")
        err_console.print(str(e), markup=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        err_console.print("[red]error:[/]", end=" ")
        err_console.print(
            f"no space left on the device{f' ({e.filename})' if e.filename else ''}: free space and run the command again",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
