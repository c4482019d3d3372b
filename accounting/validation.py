"""Collecting configuration problems: every one with its key and reason, all at once."""

from __future__ import annotations

from typing import Any


class Validator:
    """Accumulates 'key: reason' problems while a configuration is parsed."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, key: str, reason: str) -> None:
        self.problems.append(f"{key}: {reason}")

    def unknown_keys(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                name = f"{where}.{key}" if where else key
                self.add(name, f"unknown key (allowed here: {', '.join(sorted(allowed))})")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.add(key, f"must be a table, not {type(value).__name__}")
            return {}
        return value


def is_int(value: Any) -> bool:
    """A TOML integer (bool is an int subclass in Python, but not an integer here)."""
    return isinstance(value, int) and not isinstance(value, bool)
