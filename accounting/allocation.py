"""Splitting an invoice in integer cents that always add up to it exactly.

Largest remainder: each member first gets the floor of its exact proportional share, and the
cents left over go one each to the largest remainders, ties broken by member id ascending.
The result sums to the total exactly and does not depend on the order of the members.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction


def largest_remainder(total_cents: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total_cents`` in proportion to integer ``weights``.

    Each id first gets floor(total * w / W) cents; the cents left over go one each to the
    largest remainders, ties broken by id (ascending), so the result is deterministic and
    sums to ``total_cents``. Exact integer arithmetic throughout. All-zero weights are the
    caller's case to handle (raises ValueError).
    """
    if total_cents < 0:
        raise ValueError("total_cents must be >= 0")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be >= 0")
    whole = sum(weights.values())
    if whole == 0:
        raise ValueError("all weights are zero")
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, w in weights.items():
        q, r = divmod(total_cents * w, whole)
        shares[key] = q
        remainders.append((r, key))
    left = total_cents - sum(shares.values())
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, key in remainders[:left]:
        shares[key] += 1
    return shares


def split_volume(total_cents: int, volumes: Mapping[str, int]) -> tuple[dict[str, int], str | None]:
    """Volume-proportional shares; equal shares (stated) when nobody has traffic.

    Returns (shares, fallback note or None).
    """
    if not volumes:
        return {}, None
    if sum(volumes.values()) == 0:
        return (
            largest_remainder(total_cents, dict.fromkeys(volumes, 1)),
            "no member traffic in the month: the invoice is split equally",
        )
    return largest_remainder(total_cents, volumes), None


def largest_remainder_exact(
    total_cents: int, weights: Mapping[str, int | Fraction]
) -> dict[str, int]:
    """``largest_remainder`` for exact rational weights (ints or Fractions).

    The weights are brought to a common denominator, which changes no ratio, so the split is
    the exact proportional one rounded by the largest-remainder method (ties by id).
    """
    fractions = {key: Fraction(w) for key, w in weights.items()}
    common = math.lcm(1, *(f.denominator for f in fractions.values()))
    return largest_remainder(
        total_cents, {key: f.numerator * (common // f.denominator) for key, f in fractions.items()}
    )


def split_or_equal(
    total_cents: int, weights: Mapping[str, int | Fraction]
) -> tuple[dict[str, int], bool]:
    """Proportional split, or equal split when every weight is zero (returns (shares, equal?))."""
    if not weights:
        return {}, False
    if all(w == 0 for w in weights.values()):
        return largest_remainder(total_cents, dict.fromkeys(weights, 1)), True
    return largest_remainder_exact(total_cents, weights), False


def largest_remainder_rounded(
    total_cents: int, weights: Mapping[str, int], resolution: int = 1_000_000
) -> dict[str, int]:
    """``largest_remainder`` where remainders closer than 1/``resolution`` cent are ties.

    For weights that carry float rounding (Shapley values): two members whose exact shares
    have the same remainder must not be told apart by the last bits of a float, so the
    remainders are rounded to a millionth of a cent before ties are broken by id.
    """
    if total_cents < 0:
        raise ValueError("total_cents must be >= 0")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be >= 0")
    whole = sum(weights.values())
    if whole == 0:
        raise ValueError("all weights are zero")
    shares: dict[str, int] = {}
    keys: list[tuple[int, str]] = []
    for key, w in weights.items():
        q, r = divmod(total_cents * w, whole)
        shares[key] = q
        keys.append(((r * resolution * 2 + whole) // (2 * whole), key))
    left = total_cents - sum(shares.values())
    keys.sort(key=lambda item: (-item[0], item[1]))
    for _, key in keys[:left]:
        shares[key] += 1
    return shares
