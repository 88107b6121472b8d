"""The `tritonforge` command: a thin layer that registers each command from its module and renders errors.
Errors a user can fix exit with code 2."""

from __future__ import annotations

import sys

import typer

from tritonforge.cli.registry import register_all
from tritonforge.cli.render import err_console
from tritonforge.errors import TritonforgeError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Take a trained model to a fast, verified Triton Inference Server deployment.")
register_all(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except TritonforgeError as e:
        err_console.print("[red]error:[/]", end=" ")
        err_console.print(str(e), markup=False, soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
