"""Resolve 'module:callable' references from a spec; the spec's directory is searched first."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tritonforge.errors import SpecError

CALLABLE_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")


def import_callable(ref: str, base_dir: Path, field: str) -> Callable[..., Any]:
    """Import `module:callable`, looking in `base_dir` before sys.path. Errors name the spec field."""
    module_name, _, attr = ref.partition(":")
    _forget_if_shadowed(module_name, base_dir)
    added = str(base_dir) not in sys.path
    if added:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise SpecError(f"field '{field}': cannot import module '{module_name}': {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(str(base_dir))
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise SpecError(f"field '{field}': module '{module_name}' has no callable '{attr}'")
    return fn


def module_file(ref: str) -> Path | None:
    """The source file of the module a (already imported) 'module:callable' names, for hashing."""
    module = sys.modules.get(ref.partition(":")[0])
    path = getattr(module, "__file__", None)
    return Path(path) if path else None


def _forget_if_shadowed(module_name: str, base_dir: Path) -> None:
    """Drop a cached module of the same name from another directory, so the spec's own file is imported."""
    cached = sys.modules.get(module_name)
    if cached is None:
        return
    rel = Path(*module_name.split("."))
    local = [base_dir / rel.with_suffix(".py"), base_dir / rel / "__init__.py"]
    cached_file = getattr(cached, "__file__", None)
    if any(p.is_file() for p in local) and (cached_file is None or Path(cached_file).resolve() not in local):
        del sys.modules[module_name]
