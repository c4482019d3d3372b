"""Collecting configuration problems: every one with its key and reason, all at once."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
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


def euros_to_cents(v: Validator, key: str, value: Any, *, allow_text: bool = False) -> int:
    """Exact cents from a number of euros (at most two decimals, not negative).

    ``allow_text`` accepts a decimal string too (CSV cells); TOML wants a number.
    """
    accepted = int | float | str if allow_text else int | float
    if isinstance(value, bool) or not isinstance(value, accepted):
        v.add(key, f"must be a number of euros, got {value!r}")
        return 0
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        v.add(key, f"not a number: {value!r}")
        return 0
    if not amount.is_finite() or amount < 0:
        v.add(key, f"must be a finite amount >= 0, got {value!r}")
        return 0
    cents = amount * 100
    if cents != cents.to_integral_value():
        v.add(key, f"has more than two decimals: {value!r}")
        return 0
    return int(cents)
