"""The operator's contract, the syndicate's own costs, and what members pay today.

Units
-----
Money is integer cents; prices and percentages are exact fractions (parsed from the TOML
numbers as written, ``4.5`` is 9/2), and a computed amount is rounded half up to the cent
only once, at the end. Rates are in Mb/s (10^6 bit/s): a billed 95th of ``b`` bytes per bin
of ``bin_seconds`` seconds is b * 8 / bin_seconds / 10^6 Mb/s, kept as an exact Fraction.

The contract (a ``[contract]`` table)
-------------------------------------
- ``monthly_eur``: the monthly price that does not depend on traffic. Alone, it is a flat
  contract. With ``commit_mbps`` it is the price of the committed rate.
- ``commit_mbps`` with ``overage_eur_per_mbps``: each Mb/s of the billed 95th above the
  commit costs that price; or ``tiers = [{from_mbps = ..., eur_per_mbps = ...}, ...]``,
  graduated (each price applies to the Mb/s inside its tier, the first tier starting at the
  commit), so that the invoice never decreases when traffic grows. ``round_up_mbps = true``
  bills the part above the commit in whole Mb/s, rounded up.
- The fixed part, split among members by weights whatever the allocation rule:
  ``fixed_percent`` (of the invoice) plus ``fixed_eur`` plus, with ``fixed_commit = true``,
  the commit price (``monthly_eur``); capped at the invoice. ``fixed_weights``: ``equal``,
  ``population`` or ``subscribed`` (the members' ``population`` / ``subscribed_mbps``).
- The syndicate's management fee, added on top of the invoice before sharing and shown
  separately: ``fee_percent`` (of the invoice) plus ``fee_eur`` a month, split in proportion
  to each member's share of the invoice (``fee_weights = "share"``, a margin on what each
  one orders) or by ``equal`` / ``population`` / ``subscribed`` weights.

Members (attributes of ``[[members]]``)
---------------------------------------
``population`` (whole number >= 0), ``subscribed_mbps`` (>= 0) and ``flat_monthly_eur``, what
the member pays today under the syndicate's flat model; the bill shows it beside the member's
allocated cost (recovery ratio) so that the syndicate sees who subsidises whom.

Validation follows the configuration loader: ``from_mapping`` returns the model and the list
of every problem found, each ``"key: reason"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import numpy as np

WEIGHTINGS = ("equal", "population", "subscribed")
FEE_WEIGHTINGS = ("share", *WEIGHTINGS)
GAMES = ("linear", "contract", "overage")
CONTRACT_KEYS = frozenset(
    {
        "monthly_eur",
        "commit_mbps",
        "overage_eur_per_mbps",
        "tiers",
        "round_up_mbps",
        "fixed_percent",
        "fixed_eur",
        "fixed_commit",
        "fixed_weights",
        "fee_percent",
        "fee_eur",
        "fee_weights",
    }
)
MEMBER_KEYS = frozenset({"population", "subscribed_mbps", "flat_monthly_eur"})


@dataclass(frozen=True, slots=True)
class GameTariff:
    """The cost of a billed 95th of ``x`` bytes per bin: ``base + piecewise linear(x)``.

    ``knots`` ascending (bytes per bin), ``slopes[k]`` the price per byte-per-bin between
    knots[k] and knots[k+1] (the last one open-ended); with ``unit`` > 0 the part above
    knots[0] is rounded up to a multiple of ``unit`` first. Non-decreasing by construction
    (slopes >= 0), which is what makes Shapley shares non-negative and monotone.
    """

    base: float = 0.0
    knots: tuple[float, ...] = (0.0,)
    slopes: tuple[float, ...] = (1.0,)
    unit: float = 0.0
    label: str = "linear: v(S) = billed 95th of S in bytes per bin"

    def __post_init__(self) -> None:
        if len(self.knots) != len(self.slopes):
            raise ValueError("knots and slopes must have the same length")
        if any(b <= a for a, b in zip(self.knots, self.knots[1:], strict=False)):
            raise ValueError("knots must be strictly ascending")
        if any(s < 0 for s in self.slopes) or self.base < 0 or self.unit < 0:
            raise ValueError("base, slopes and unit must be >= 0")

    def value(self, x: float) -> float:
        """g(x), the same formula as the kernel in accounting/shapley.py."""
        if not self.knots:
            return self.base
        over = float(x) - self.knots[0]
        if over <= 0.0:
            return self.base
        if self.unit > 0.0:
            over = math.ceil(over / self.unit) * self.unit
        top = self.knots[0] + over
        v = self.base
        for k, lo in enumerate(self.knots):
            if top <= lo:
                break
            hi = self.knots[k + 1] if k + 1 < len(self.knots) else top
            v += self.slopes[k] * (min(top, hi) - lo)
        return v

    @property
    def steepest(self) -> float:
        return max(self.slopes, default=0.0)

    def bound(self, peak: float) -> float:
        """Upper bound of any marginal contribution of a member whose peak is ``peak``."""
        return self.base + self.steepest * (peak + self.unit)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(knots, slopes, unit) as the kernels take them."""
        return (
            np.asarray(self.knots, dtype=np.float64),
            np.asarray(self.slopes, dtype=np.float64),
            float(self.unit),
        )


def round_half_up(amount: Fraction) -> int:
    """The nearest integer, halves rounded up (amounts here are never negative)."""
    return math.floor(amount + Fraction(1, 2))


def mbps_of(bytes_per_bin: int, bin_seconds: int) -> Fraction:
    """The exact rate in Mb/s of a per-bin byte count."""
    return Fraction(bytes_per_bin * 8, bin_seconds * 1_000_000)


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d} €"


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


@dataclass(frozen=True, slots=True)
class Tier:
    """From ``from_mbps`` upwards (to the next tier), each Mb/s costs ``cents_per_mbps``."""

    from_mbps: Fraction
    cents_per_mbps: Fraction


@dataclass(frozen=True, slots=True)
class ContractModel:
    """The contract and the syndicate's own costs (see the module docstring)."""

    monthly_cents: int = 0
    commit_mbps: Fraction | None = None  # None: flat contract
    tiers: tuple[Tier, ...] = ()
    round_up_mbps: bool = False
    fixed_percent: Fraction = Fraction(0)
    fixed_cents: int = 0
    fixed_commit: bool = False
    fixed_weights: str = "equal"
    fee_percent: Fraction = Fraction(0)
    fee_cents: int = 0
    fee_weights: str = "share"

    @property
    def kind(self) -> str:
        return "flat" if not self.tiers else "commit"

    # ---- the operator's invoice

    def overage_cents(self, billed_mbps: Fraction) -> Fraction:
        """Exact price of the billed 95th above the commit (0 for a flat contract)."""
        if not self.tiers:
            return Fraction(0)
        commit = self.commit_mbps or Fraction(0)
        over = Fraction(billed_mbps) - commit
        if over <= 0:
            return Fraction(0)
        if self.round_up_mbps:
            over = Fraction(math.ceil(over))
        top = commit + over
        total = Fraction(0)
        for k, tier in enumerate(self.tiers):
            if top <= tier.from_mbps:
                break
            end = self.tiers[k + 1].from_mbps if k + 1 < len(self.tiers) else top
            total += tier.cents_per_mbps * (min(top, end) - tier.from_mbps)
        return total

    def invoice_cents(self, billed_mbps: Fraction) -> int:
        """The modelled monthly invoice for a billed 95th of ``billed_mbps``."""
        return self.monthly_cents + round_half_up(self.overage_cents(billed_mbps))

    def invoice_lines(self, billed_mbps: Fraction) -> list[str]:
        """How the modelled invoice is made up, one line per part."""
        lines = [f"monthly price {format_cents(self.monthly_cents)}"]
        if self.tiers:
            commit = self.commit_mbps or Fraction(0)
            over = max(Fraction(0), Fraction(billed_mbps) - commit)
            rounded = Fraction(math.ceil(over)) if self.round_up_mbps else over
            lines.append(
                f"billed 95th {float(billed_mbps):.3f} Mb/s, commit {_fmt(commit)} Mb/s, "
                f"{float(rounded):.3f} Mb/s above: {format_cents(round_half_up(self.overage_cents(billed_mbps)))}"
            )
        return lines

    # ---- sharing inputs

    def fee(self, invoice_cents: int) -> int:
        """The syndicate's management fee on an invoice (percent, rounded half up, + fixed)."""
        return round_half_up(invoice_cents * self.fee_percent / 100) + self.fee_cents

    def fixed_part(self, invoice_cents: int) -> tuple[int, str | None]:
        """The part of the invoice split by ``fixed_weights`` (capped at the invoice)."""
        amount = round_half_up(invoice_cents * self.fixed_percent / 100) + self.fixed_cents
        if self.fixed_commit:
            amount += self.monthly_cents
        if amount > invoice_cents:
            return invoice_cents, (
                f"the fixed part ({format_cents(amount)}) exceeds the invoice "
                f"({format_cents(invoice_cents)}): capped at the invoice"
            )
        return amount, None

    def game_tariff(self, game: str, bin_seconds: int) -> GameTariff:
        """The tariff of the Shapley cost game, over the billed 95th in bytes per bin.

        ``linear``: v(S) = the billed 95th of S (95th-percentile pricing at a uniform price;
        the values are then scaled to the amount to share, so the price does not matter).
        ``contract``: v(S) = what S would pay alone under this contract (monthly price plus
        overage). For a flat contract it is the same for every coalition, and its Shapley
        value is the equal split. ``overage``: v(S) = the overage part only (the monthly
        price being a fixed cost; pair it with ``fixed_commit = true``).
        """
        if game == "linear":
            return GameTariff()
        if game not in GAMES:
            raise ValueError(f"game must be one of {', '.join(GAMES)}, got {game!r}")
        bytes_per_mbps = 1_000_000 * bin_seconds / 8
        knots = tuple(float(t.from_mbps) * bytes_per_mbps for t in self.tiers)
        slopes = tuple(float(t.cents_per_mbps) / bytes_per_mbps for t in self.tiers)
        base = float(self.monthly_cents) if game == "contract" else 0.0
        unit = bytes_per_mbps if self.round_up_mbps and self.tiers else 0.0
        label = (
            "contract: v(S) = what S would pay alone under the contract, in cents"
            if game == "contract"
            else "overage: v(S) = the overage S would pay above the commit, in cents"
        )
        return GameTariff(base, knots, slopes, unit, label)

    def describe(self) -> list[str]:
        """The contract in words, for the report."""
        if not self.tiers:
            lines = [f"flat contract: {format_cents(self.monthly_cents)} a month"]
        else:
            commit = self.commit_mbps or Fraction(0)
            lines = [f"commit {_fmt(commit)} Mb/s for {format_cents(self.monthly_cents)} a month"]
            for k, tier in enumerate(self.tiers):
                end = (
                    f"to {_fmt(self.tiers[k + 1].from_mbps)} Mb/s"
                    if k + 1 < len(self.tiers)
                    else "upwards"
                )
                lines.append(
                    f"  from {_fmt(tier.from_mbps)} Mb/s {end}: "
                    f"{float(tier.cents_per_mbps) / 100:g} € per Mb/s of billed 95th"
                )
            if self.round_up_mbps:
                lines.append("  the billed 95th above the commit is rounded up to whole Mb/s")
        fixed = []
        if self.fixed_percent:
            fixed.append(f"{_fmt(self.fixed_percent)}% of the invoice")
        if self.fixed_cents:
            fixed.append(format_cents(self.fixed_cents))
        if self.fixed_commit:
            fixed.append("the monthly price")
        if fixed:
            lines.append(f"fixed part: {' + '.join(fixed)}, split by {self.fixed_weights} weights")
        fee = []
        if self.fee_percent:
            fee.append(f"{_fmt(self.fee_percent)}% of the invoice")
        if self.fee_cents:
            fee.append(f"{format_cents(self.fee_cents)} a month")
        if fee:
            how = (
                "in proportion to each member's share"
                if self.fee_weights == "share"
                else f"by {self.fee_weights} weights"
            )
            lines.append(f"management fee: {' + '.join(fee)}, split {how}")
        return lines

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any] | None, where: str = "contract"
    ) -> tuple[ContractModel, list[str]]:
        """Validate a ``[contract]`` table; returns (model, problems as "key: reason")."""
        problems: list[str] = []
        if raw is None:
            return cls(), [
                f"{where}: missing table: give [contract] monthly_eur = <monthly price> "
                "(and commit_mbps with overage_eur_per_mbps or tiers for a committed rate)"
            ]
        if not isinstance(raw, Mapping):
            return cls(), [f"{where}: must be a table, not {type(raw).__name__}"]
        _unknown(raw, CONTRACT_KEYS, where, problems)

        def key(name: str) -> str:
            return f"{where}.{name}"

        monthly = _money(raw, "monthly_eur", key("monthly_eur"), problems)
        commit = _number(raw, "commit_mbps", key("commit_mbps"), problems)
        overage = _number(raw, "overage_eur_per_mbps", key("overage_eur_per_mbps"), problems)
        tiers = _tiers(raw.get("tiers"), key("tiers"), problems)
        if overage is not None and tiers:
            problems.append(f"{key('tiers')}: give tiers or overage_eur_per_mbps, not both")
        if overage is not None and not tiers:
            tiers = (Tier(commit or Fraction(0), overage * 100),)
        if tiers:
            start = commit or Fraction(0)
            if tiers[0].from_mbps != start:
                problems.append(
                    f"{key('tiers')}[0].from_mbps: the first tier must start at the commit "
                    f"({_fmt(start)} Mb/s), got {_fmt(tiers[0].from_mbps)}"
                )
        elif commit is not None:
            problems.append(
                f"{key('commit_mbps')}: a committed rate needs a price above it "
                "(overage_eur_per_mbps or tiers)"
            )
        if "monthly_eur" not in raw and not tiers:
            problems.append(
                f"{key('monthly_eur')}: missing: the operator's monthly price in euros "
                "(or commit_mbps with overage_eur_per_mbps or tiers)"
            )
        model = cls(
            monthly_cents=monthly or 0,
            commit_mbps=(commit or Fraction(0)) if tiers else None,
            tiers=tiers,
            round_up_mbps=_bool(raw, "round_up_mbps", key("round_up_mbps"), problems),
            fixed_percent=_percent(raw, "fixed_percent", key("fixed_percent"), problems),
            fixed_cents=_money(raw, "fixed_eur", key("fixed_eur"), problems) or 0,
            fixed_commit=_bool(raw, "fixed_commit", key("fixed_commit"), problems),
            fixed_weights=_choice(raw, "fixed_weights", WEIGHTINGS, key("fixed_weights"), problems),
            fee_percent=_percent(raw, "fee_percent", key("fee_percent"), problems),
            fee_cents=_money(raw, "fee_eur", key("fee_eur"), problems) or 0,
            fee_weights=_choice(raw, "fee_weights", FEE_WEIGHTINGS, key("fee_weights"), problems),
        )
        return model, problems


@dataclass(frozen=True, slots=True)
class MemberTerms:
    """What the sharing needs to know about a member besides its traffic."""

    id: str
    population: int | None = None
    subscribed_mbps: Fraction | None = None
    flat_monthly_cents: int | None = None

    @classmethod
    def from_mapping(
        cls, member_id: str, raw: Mapping[str, Any], where: str = "members[0]"
    ) -> tuple[MemberTerms, list[str]]:
        """Read ``population``, ``subscribed_mbps``, ``flat_monthly_eur`` of a ``[[members]]``
        entry (other keys are the loader's business); returns (terms, problems)."""
        problems: list[str] = []
        population = raw.get("population")
        if population is not None and (
            not isinstance(population, int) or isinstance(population, bool) or population < 0
        ):
            problems.append(f"{where}.population: must be a whole number >= 0, got {population!r}")
            population = None
        subscribed = _number(raw, "subscribed_mbps", f"{where}.subscribed_mbps", problems)
        flat = _money(raw, "flat_monthly_eur", f"{where}.flat_monthly_eur", problems)
        return cls(member_id, population, subscribed, flat), problems


def weights_for(
    weighting: str, member_ids: Iterable[str], terms: Mapping[str, MemberTerms]
) -> dict[str, int | Fraction]:
    """Weights of a ``fixed_weights`` / ``fee_weights`` choice (missing values count 0)."""
    out: dict[str, int | Fraction] = {}
    for mid in member_ids:
        t = terms.get(mid)
        if weighting == "equal":
            out[mid] = 1
        elif weighting == "population":
            out[mid] = (t.population if t else None) or 0
        elif weighting == "subscribed":
            out[mid] = (t.subscribed_mbps if t else None) or Fraction(0)
        else:
            raise ValueError(f"unknown weighting {weighting!r}")
    return out


def check_terms(
    contract: ContractModel, terms: Mapping[str, MemberTerms], where_of: Mapping[str, str]
) -> list[str]:
    """Problems of members lacking an attribute that the contract's weights need.

    ``where_of`` maps a member id to its configuration key (``members[3] (id 'x')``).
    """
    problems = []
    needs = {contract.fixed_weights, contract.fee_weights} & {"population", "subscribed"}
    if contract.fixed_weights in needs and not (
        contract.fixed_percent or contract.fixed_cents or contract.fixed_commit
    ):
        needs.discard(contract.fixed_weights)
    if contract.fee_weights in needs and not (contract.fee_percent or contract.fee_cents):
        needs.discard(contract.fee_weights)
    attribute = {"population": "population", "subscribed": "subscribed_mbps"}
    for mid, where in where_of.items():
        t = terms.get(mid, MemberTerms(mid))
        for need in sorted(needs):
            value = t.population if need == "population" else t.subscribed_mbps
            if value is None:
                problems.append(
                    f"{where}.{attribute[need]}: missing, needed by the contract's {need!r} weights"
                )
    return problems


# ---- validation helpers


def _unknown(raw: Mapping[str, Any], allowed: frozenset[str], where: str, problems: list[str]):
    for name in raw:
        if name not in allowed:
            problems.append(
                f"{where}.{name}: unknown key (allowed here: {', '.join(sorted(allowed))})"
            )


def _decimal(value: Any, key: str, problems: list[str]) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{key}: must be a number, got {value!r}")
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        problems.append(f"{key}: not a number: {value!r}")
        return None
    if not amount.is_finite() or amount < 0:
        problems.append(f"{key}: must be a finite number >= 0, got {value!r}")
        return None
    return Fraction(amount)


def _number(raw: Mapping[str, Any], name: str, key: str, problems: list[str]) -> Fraction | None:
    if name not in raw:
        return None
    return _decimal(raw[name], key, problems)


def _money(raw: Mapping[str, Any], name: str, key: str, problems: list[str]) -> int | None:
    if name not in raw:
        return None
    amount = _decimal(raw[name], key, problems)
    if amount is None:
        return None
    cents = amount * 100
    if cents.denominator != 1:
        problems.append(f"{key}: has more than two decimals: {raw[name]!r}")
        return None
    return int(cents)


def _percent(raw: Mapping[str, Any], name: str, key: str, problems: list[str]) -> Fraction:
    value = _number(raw, name, key, problems)
    if value is None:
        return Fraction(0)
    if value > 100:
        problems.append(f"{key}: must be a percentage from 0 to 100, got {raw[name]!r}")
        return Fraction(0)
    return value


def _bool(raw: Mapping[str, Any], name: str, key: str, problems: list[str]) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        problems.append(f"{key}: must be true or false, got {value!r}")
        return False
    return value


def _choice(
    raw: Mapping[str, Any], name: str, choices: tuple[str, ...], key: str, problems: list[str]
) -> str:
    value = raw.get(name, choices[0])
    if value not in choices:
        problems.append(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
        return choices[0]
    return value


def _tiers(raw: Any, key: str, problems: list[str]) -> tuple[Tier, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(
            f"{key}: must be a non-empty array of tables such as "
            "[{from_mbps = 1000, eur_per_mbps = 4.5}]"
        )
        return ()
    tiers: list[Tier] = []
    for k, entry in enumerate(raw):
        where = f"{key}[{k}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a table {{from_mbps = ..., eur_per_mbps = ...}}")
            continue
        _unknown(entry, frozenset({"from_mbps", "eur_per_mbps"}), where, problems)
        start = _number(entry, "from_mbps", f"{where}.from_mbps", problems)
        price = _number(entry, "eur_per_mbps", f"{where}.eur_per_mbps", problems)
        for name in ("from_mbps", "eur_per_mbps"):
            if name not in entry:
                problems.append(f"{where}.{name}: missing")
        if start is None or price is None:
            continue
        if tiers and start <= tiers[-1].from_mbps:
            problems.append(
                f"{where}.from_mbps: tiers must be in increasing from_mbps order "
                f"({_fmt(start)} after {_fmt(tiers[-1].from_mbps)})"
            )
            continue
        tiers.append(Tier(start, price * 100))
    return tuple(tiers)
