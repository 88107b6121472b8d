"""Incremental rebuilds: each stage (export, a variant's conversion and gate, the INT8 search grid, timing) is
skipped when its key (a hash of everything it depends on) is the one the last build recorded."""

from __future__ import annotations

from collections.abc import Callable


class StageCache:
    """The last build's stage records, and this build's (what the manifest keeps for the next one)."""

    def __init__(self, previous: dict[str, dict]) -> None:
        self.previous = previous
        self.records: dict[str, dict] = {}

    def lookup(self, name: str, key: str, still_valid: Callable[[dict], bool] | None = None) -> dict | None:
        """The last build's record of stage `name` if its key was `key` (and `still_valid` agrees, e.g. its file is
        still published); this build records `key` for it either way."""
        self.records[name] = {"key": key}
        old = self.previous.get(name)
        if old is None or old.get("key") != key or (still_valid is not None and not still_valid(old)):
            return None
        return old

    def store(self, name: str, key: str, **fields) -> dict:
        """Record what stage `name` produced under `key`."""
        self.records[name] = {"key": key, **fields}
        return self.records[name]
