"""Options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RepoOption = Annotated[Path, typer.Option("--repo", "-r", help="Triton model repository to write/read")]
