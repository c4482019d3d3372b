"""Allocation rules: how an amount of integer cents is split among members from their traffic.

Inputs and semantics (stated in every report through ``Semantics.describe``)
----------------------------------------------------------------------------
- Traffic is two matrices of per-bin byte counts, ``inbound`` and ``outbound``:
  int64[members, bins], one row per member, one column per aligned bin of the billing month
  (``bin_seconds``, 300 by default). The rate of a bin is bytes * 8 / bin_seconds.
- Missing bins (no data at all, from any exporter) are excluded from the percentile by
  default (``missing = "exclude"``) or counted as zero traffic (``"zero"``); their number is
  kept in ``Usage.bins_missing`` either way. A local month has 8,928 five-minute bins when
  it has 31 days, 8,916 in March 2026 and 8,940 in October 2026 in Europe/Paris (the DST
  changes: see ``accounting.bins.billing_month``).
- Percentile: nearest rank, r = ceil(p n / 100) in integers (``accounting.percentile``).
- Direction rule: ``max`` (default) bills max(P95_in, P95_out), computed separately per
  direction; ``sum`` bills the 95th of in + out per bin; ``in`` / ``out`` one direction only.
  With ``max``, the billed direction is the one whose aggregate 95th is higher (``in`` on a
  tie), and the rules that need one direction (``volume``, ``p95-bin``) use it.
- The aggregate the operator bills is the members' traffic plus ``other`` traffic (e.g.
  unattributed bytes of known direction). It sets the billed 95th, the billed direction and
  the bin(s) of ``p95-bin``; ``other`` traffic belongs to nobody, so its cost is carried by
  the members according to the rule. The Shapley game has the members only as players.

Rules (``allocate``), each giving integer cents that sum exactly to the amount
-----------------------------------------------------------------------------
- ``volume``: in proportion to the bytes in the billed direction (in + out for ``sum``).
- ``p95-own``: in proportion to each member's stand-alone billed 95th (its own per-bin
  series under the same direction rule: with ``max``, max of its own P95_in and P95_out).
  When every one is zero (traffic in bursts shorter than 5% of the month), it falls back to
  ``volume`` and says so.
- ``p95-bin``: in proportion to each member's traffic in the bin that sets the aggregate's
  billed 95th: the Aumann-Shapley share of the 95th-percentile game (its derivative with
  respect to each member's traffic). ``band_bins = b`` widens it to the bins ranked r - b ..
  r + b (smoothing: the share no longer hinges on a single five-minute bin). Falls back to
  ``volume`` when those bins carry no member traffic.
- ``shapley``: in proportion to the Shapley values of the game v(S) = tariff(billed 95th of
  S's traffic) (``accounting.shapley``; the tariff is ``linear`` by default, or the
  contract's, see ``ContractModel.game_tariff``), exact up to ``exact_max_members`` members
  with traffic, Monte Carlo above. The real values are turned into cents by largest
  remainder on the values (quantised to 2^-40 of their sum, and remainders within a
  millionth of a cent treated as ties, so that float rounding cannot decide a cent). Falls
  back to ``volume`` when the game is worth 0.
- Any rule falls back to an equal split, stated, when its fallback has nothing either.
Ties of the largest remainder are broken by member id (ascending): the result does not
depend on the order of the members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from accounting.allocation import largest_remainder_rounded, split_or_equal
from accounting.contract import GAMES, GameTariff
from accounting.percentile import percentile_band, percentile_bin, percentile_rows, percentile_value

if TYPE_CHECKING:
    from accounting.shapley import ShapleyResult

RULES = ("volume", "p95-own", "p95-bin", "shapley")
DIRECTIONS = ("max", "sum", "in", "out")
MISSING = ("exclude", "zero")
SHAPLEY_QUANTUM = 2**40
DEFAULT_SEED = 20100901  # IMC 2010
SHARING_KEYS = frozenset(
    {"rule", "compare", "band_bins", "game", "seed", "tolerance", "max_pairs", "exact_max_members"}
)


@dataclass(frozen=True, slots=True)
class Semantics:
    """How traffic becomes a billed 95th."""

    percentile: int = 95
    direction: str = "max"
    missing: str = "exclude"
    bin_seconds: int = 300

    def __post_init__(self) -> None:
        if not 1 <= self.percentile <= 100:
            raise ValueError("percentile must be in 1..100")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if self.missing not in MISSING:
            raise ValueError(f"missing must be one of {', '.join(MISSING)}")
        if self.bin_seconds <= 0:
            raise ValueError("bin_seconds must be > 0")

    def describe(self) -> list[str]:
        p = self.percentile
        rule = {
            "max": f"max(P{p} in, P{p} out)",
            "sum": f"P{p} of in + out per bin",
            "in": f"P{p} of inbound traffic",
            "out": f"P{p} of outbound traffic",
        }[self.direction]
        return [
            f"bins of {self.bin_seconds} s aligned on UTC; rate = bytes * 8 / {self.bin_seconds} s",
            f"{p}th percentile by nearest rank: r = ceil({p} n / 100) of the n bins, ascending",
            f"billed value: {rule}",
            "bins without data: "
            + ("excluded from n" if self.missing == "exclude" else "counted as zero traffic"),
        ]


@dataclass(frozen=True, slots=True)
class SharingPolicy:
    """Which rule shares the usage part, which ones are shown beside it, and their settings.

    The ``[sharing]`` table, every key optional: ``rule`` (default ``volume``, the
    foundation's behaviour), ``compare`` (rules computed side by side, default all four; the
    chosen rule is always computed), ``band_bins`` (p95-bin smoothing half-width, 0),
    ``game`` (Shapley tariff: ``linear``, ``contract`` or ``overage``, see
    ``ContractModel.game_tariff``), ``seed`` (20100901), ``tolerance`` (0.005: the widest 95%
    interval as a fraction of the share), ``max_pairs`` (100,000 antithetic pairs at most),
    ``exact_max_members`` (20: exact Shapley up to that many members with traffic).
    """

    rule: str = "volume"
    compare: tuple[str, ...] = RULES
    band_bins: int = 0
    game: str = "linear"
    seed: int = DEFAULT_SEED
    tolerance: float = 0.005
    max_pairs: int = 100_000
    exact_max_members: int = 20

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any] | None, where: str = "sharing"
    ) -> tuple[SharingPolicy, list[str]]:
        """Validate a ``[sharing]`` table (every key optional); returns (policy, problems)."""
        d = cls()
        if raw is None:
            return d, []
        if not isinstance(raw, Mapping):
            return d, [f"{where}: must be a table, not {type(raw).__name__}"]
        problems: list[str] = []
        for name in raw:
            if name not in SHARING_KEYS:
                problems.append(
                    f"{where}.{name}: unknown key (allowed here: {', '.join(sorted(SHARING_KEYS))})"
                )
        rule = raw.get("rule", d.rule)
        if rule not in RULES:
            problems.append(f"{where}.rule: must be one of {', '.join(RULES)}, got {rule!r}")
            rule = d.rule
        compare = raw.get("compare", list(d.compare))
        if not isinstance(compare, list) or any(c not in RULES for c in compare):
            problems.append(
                f"{where}.compare: must be a list of rules among {', '.join(RULES)}, got {compare!r}"
            )
            compare = list(d.compare)
        game = raw.get("game", d.game)
        if game not in GAMES:
            problems.append(f"{where}.game: must be one of {', '.join(GAMES)}, got {game!r}")
            game = d.game

        def whole(name: str, low: int, high: int) -> int:
            value = raw.get(name, getattr(d, name))
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                problems.append(
                    f"{where}.{name}: must be a whole number from {low} to {high}, got {value!r}"
                )
                return getattr(d, name)
            return value

        band = whole("band_bins", 0, 10_000)
        seed = whole("seed", 0, 2**63 - 1)
        max_pairs = whole("max_pairs", 1, 10**9)
        exact_max = whole("exact_max_members", 0, 24)
        tolerance = raw.get("tolerance", d.tolerance)
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not 0 < tolerance < 1
        ):
            problems.append(
                f"{where}.tolerance: must be a fraction of the share in (0, 1) such as 0.005, "
                f"got {tolerance!r}"
            )
            tolerance = d.tolerance
        policy = cls(
            rule,
            tuple(dict.fromkeys(compare)),
            band,
            game,
            seed,
            float(tolerance),
            max_pairs,
            exact_max,
        )
        return policy, problems


@dataclass(frozen=True, eq=False)
class Usage:
    """Per-member per-bin traffic of a month, ready for the rules (see ``prepare_usage``)."""

    member_ids: tuple[str, ...]
    inbound: np.ndarray  # int64[M, B]
    outbound: np.ndarray  # int64[M, B]
    other_in: np.ndarray  # int64[B], traffic of no member (counts in the aggregate)
    other_out: np.ndarray
    columns: np.ndarray  # int64[B]: the bin number in the month of each column
    bins_in_month: int
    bins_missing: int
    semantics: Semantics

    @property
    def bins(self) -> int:
        """n, the number of bins the percentile is taken over."""
        return self.inbound.shape[1]

    def member_series(self, direction: str) -> np.ndarray:
        """int64[M, B] of 'in', 'out' or 'in+out'."""
        if direction == "in":
            return self.inbound
        if direction == "out":
            return self.outbound
        return self.inbound + self.outbound

    def game_matrix(self) -> np.ndarray:
        """int64[D, M, B] for the Shapley game under the direction rule."""
        rule = self.semantics.direction
        if rule == "max":
            return np.stack([self.inbound, self.outbound])
        return self.member_series("in+out" if rule == "sum" else rule)[None]


def prepare_usage(
    member_ids: Sequence[str],
    inbound: np.ndarray,
    outbound: np.ndarray,
    semantics: Semantics = Semantics(),
    *,
    bin_numbers: np.ndarray | None = None,
    bins_in_month: int | None = None,
    present: np.ndarray | None = None,
    other_in: np.ndarray | None = None,
    other_out: np.ndarray | None = None,
) -> Usage:
    """Check the matrices and apply the missing-bins rule.

    ``inbound``/``outbound``: int64[M, C] byte counts for C columns, which are month bins
    ``bin_numbers`` (default 0..C-1). ``bins_in_month`` (default C): month bins not among
    the columns had no data. ``present`` (bool[C], default all): columns that had data;
    the others are missing too. ``exclude`` keeps the present columns only; ``zero`` keeps
    them all and adds a zero column for every month bin not given, so that n is the whole
    month. ``other_in``/``other_out``: int64[C] traffic of nobody (e.g. unattributed).
    """
    ids = tuple(member_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("member ids must be unique")
    inbound = np.asarray(inbound)
    outbound = np.asarray(outbound)
    if inbound.ndim != 2 or inbound.shape != outbound.shape or inbound.shape[0] != len(ids):
        raise ValueError("inbound and outbound must both be int64[members, bins]")
    for name, matrix in (("inbound", inbound), ("outbound", outbound)):
        if not np.issubdtype(matrix.dtype, np.integer):
            raise ValueError(f"{name} must hold integer byte counts")
        if matrix.size and matrix.min() < 0:
            raise ValueError(f"{name} has negative byte counts")
    C = inbound.shape[1]
    columns = np.arange(C, dtype=np.int64) if bin_numbers is None else np.asarray(bin_numbers)
    if columns.shape != (C,):
        raise ValueError("bin_numbers must have one entry per column")
    total = C if bins_in_month is None else int(bins_in_month)
    if total < C or (C and (columns.min() < 0 or columns.max() >= total)):
        raise ValueError("bin_numbers must lie in 0 .. bins_in_month - 1")
    if len(np.unique(columns)) != C:
        raise ValueError("bin_numbers must be unique")
    keep = np.ones(C, dtype=bool) if present is None else np.asarray(present, dtype=bool)
    o_in = np.zeros(C, np.int64) if other_in is None else np.asarray(other_in, np.int64)
    o_out = np.zeros(C, np.int64) if other_out is None else np.asarray(other_out, np.int64)
    if keep.shape != (C,) or o_in.shape != (C,) or o_out.shape != (C,):
        raise ValueError("present, other_in and other_out must have one entry per column")
    missing = total - int(keep.sum())
    inbound = inbound.astype(np.int64, copy=False)
    outbound = outbound.astype(np.int64, copy=False)
    if semantics.missing == "exclude":
        if not keep.all():
            inbound, outbound = inbound[:, keep], outbound[:, keep]
            o_in, o_out, columns = o_in[keep], o_out[keep], columns[keep]
    elif total > C:
        absent = np.setdiff1d(np.arange(total, dtype=np.int64), columns)
        pad = np.zeros((len(ids), len(absent)), np.int64)
        inbound = np.concatenate([inbound, pad], axis=1)
        outbound = np.concatenate([outbound, pad], axis=1)
        o_in = np.concatenate([o_in, np.zeros(len(absent), np.int64)])
        o_out = np.concatenate([o_out, np.zeros(len(absent), np.int64)])
        columns = np.concatenate([columns, absent])
    return Usage(
        ids, inbound, outbound, o_in, o_out, columns.astype(np.int64), total, missing, semantics
    )


@dataclass(frozen=True, slots=True)
class Billed:
    """The aggregate's 95th per direction, the bins that set them, and the billed value."""

    p95_in: int  # bytes per bin
    bin_in: int  # column index (-1 without bins); Usage.columns gives the month bin
    p95_out: int
    bin_out: int
    p95_sum: int
    bin_sum: int
    direction: str  # 'in', 'out' or 'in+out'
    bytes: int  # the billed 95th
    bin: int
    bins: int  # n

    def mbps(self, bin_seconds: int) -> Fraction:
        return Fraction(self.bytes * 8, bin_seconds * 1_000_000)


def billed(usage: Usage, *, include_other: bool = True) -> Billed:
    """The billed 95th of the aggregate (members + other traffic unless told otherwise)."""
    sem = usage.semantics
    p = sem.percentile
    agg_in = usage.inbound.sum(axis=0)
    agg_out = usage.outbound.sum(axis=0)
    if include_other:
        agg_in = agg_in + usage.other_in
        agg_out = agg_out + usage.other_out
    agg_sum = agg_in + agg_out
    values = {}
    for name, series in (("in", agg_in), ("out", agg_out), ("in+out", agg_sum)):
        values[name] = (int(percentile_value(series, p)), percentile_bin(series, p))
    if sem.direction == "max":
        direction = "out" if values["out"][0] > values["in"][0] else "in"
    elif sem.direction == "sum":
        direction = "in+out"
    else:
        direction = sem.direction
    return Billed(
        *values["in"],
        *values["out"],
        *values["in+out"],
        direction,
        *values[direction],
        usage.bins,
    )


def standalone_bytes(usage: Usage) -> np.ndarray:
    """Each member's own billed 95th under the direction rule (what it would be billed alone)."""
    p = usage.semantics.percentile
    rule = usage.semantics.direction
    if rule == "max":
        return np.maximum(
            percentile_rows(usage.inbound, p), percentile_rows(usage.outbound, p)
        ).astype(np.int64)
    series = usage.member_series("in+out" if rule == "sum" else rule)
    return percentile_rows(series, p).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Allocation:
    """Integer cents per member under one rule, and what they are proportional to."""

    rule: str
    member_ids: tuple[str, ...]
    cents: tuple[int, ...]
    weights: tuple[Any, ...]  # what the cents are proportional to (after any fallback)
    basis: str  # the weights in words
    used: str  # the rule that produced the weights (differs from ``rule`` after a fallback)
    amount_cents: int
    notes: tuple[str, ...] = ()
    band: tuple[int, ...] = ()  # p95-bin: the column(s) of the bins used
    shapley: ShapleyResult | None = None

    def by_id(self) -> dict[str, int]:
        return dict(zip(self.member_ids, self.cents, strict=True))

    @property
    def fell_back(self) -> bool:
        return self.used != self.rule

    def halfwidth_cents(self) -> tuple[float, ...] | None:
        """Shapley Monte Carlo: each member's 95% interval half-width, in cents of this
        allocation (None for other rules or exact values)."""
        r = self.shapley
        if r is None or self.used != "shapley" or r.method != "monte-carlo":
            return None
        total = float(np.maximum(r.values, 0.0).sum())
        if total <= 0:
            return None
        return tuple(float(h) * self.amount_cents / total for h in r.halfwidth)


def _split(
    rule: str,
    used: str,
    ids: tuple[str, ...],
    amount: int,
    weights: Sequence[Any],
    basis: str,
    notes: list[str],
    *,
    rounded: bool = False,
    **kw: Any,
) -> Allocation:
    mapping = dict(zip(ids, weights, strict=True))
    if rounded and any(weights):
        shares, equal = largest_remainder_rounded(amount, mapping), False
    else:
        shares, equal = split_or_equal(amount, mapping)
    if equal and ids:
        notes.append(f"{basis}: zero for every member, the amount is split equally")
        used, basis = "equal", "equal split"
    return Allocation(
        rule,
        ids,
        tuple(shares[i] for i in ids),
        tuple(weights),
        basis,
        used,
        amount,
        tuple(notes),
        **kw,
    )


def split_by_weights(
    amount_cents: int, member_ids: Sequence[str], weights: Mapping[str, int | Fraction], label: str
) -> Allocation:
    """A fixed amount split by given weights (equal split, stated, when all are zero)."""
    ids = tuple(member_ids)
    return _split(
        label, label, ids, amount_cents, [weights[i] for i in ids], f"{label} weights", []
    )


def _volume(usage: Usage, direction: str) -> list[int]:
    return [int(v) for v in usage.member_series(direction).sum(axis=1)]


def allocate(
    rule: str,
    usage: Usage,
    amount_cents: int,
    policy: SharingPolicy = SharingPolicy(),
    *,
    tariff: GameTariff | None = None,
    billed_value: Billed | None = None,
) -> Allocation:
    """Split ``amount_cents`` among ``usage.member_ids`` under ``rule`` (see the module doc).

    ``tariff`` is the Shapley game's (default linear); ``billed_value`` saves recomputing
    ``billed(usage)`` when the caller has it.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if amount_cents < 0:
        raise ValueError("amount_cents must be >= 0")
    ids = usage.member_ids
    b = billed_value or billed(usage)
    direction = b.direction
    volume_basis = f"bytes {direction}"
    notes: list[str] = []

    def fallback(reason: str) -> Allocation:
        notes.append(f"{rule}: {reason}; fell back to volume ({volume_basis})")
        return _split(
            rule, "volume", ids, amount_cents, _volume(usage, direction), volume_basis, notes
        )

    if rule == "volume":
        return _split(rule, rule, ids, amount_cents, _volume(usage, direction), volume_basis, notes)
    if rule == "p95-own":
        own = [int(v) for v in standalone_bytes(usage)]
        if ids and not any(own):
            return fallback(
                "every member's own 95th is zero (its traffic fills less than "
                f"{100 - usage.semantics.percentile}% of the bins)"
            )
        return _split(
            rule,
            rule,
            ids,
            amount_cents,
            own,
            f"own {usage.semantics.percentile}th ({usage.semantics.direction})",
            notes,
        )
    if rule == "p95-bin":
        agg = {
            "in": usage.inbound.sum(axis=0) + usage.other_in,
            "out": usage.outbound.sum(axis=0) + usage.other_out,
        }
        series = agg["in"] + agg["out"] if direction == "in+out" else agg[direction]
        band = percentile_band(series, usage.semantics.percentile, policy.band_bins)
        weights = [int(v) for v in usage.member_series(direction)[:, band].sum(axis=1)]
        if ids and not any(weights):
            return fallback("the bin(s) setting the aggregate 95th hold no member traffic")
        width = len(band)
        basis = (
            f"bytes {direction} in the bin setting the aggregate {usage.semantics.percentile}th"
            if width == 1
            else f"bytes {direction} in the {width} bins ranked r-{policy.band_bins}..r+"
            f"{policy.band_bins} around the aggregate {usage.semantics.percentile}th"
        )
        return _split(
            rule, rule, ids, amount_cents, weights, basis, notes, band=tuple(int(c) for c in band)
        )
    # shapley
    from accounting import shapley as sh

    tariff = tariff or sh.LINEAR
    X = usage.game_matrix()
    players = int((X.max(axis=(0, 2)) > 0).sum()) if X.size else 0
    if players <= policy.exact_max_members:
        result = sh.shapley_exact(X, usage.semantics.percentile, tariff)
    else:
        result = sh.shapley_monte_carlo(
            X,
            usage.semantics.percentile,
            tariff,
            seed=policy.seed,
            tolerance=policy.tolerance,
            max_pairs=policy.max_pairs,
        )
    notes.extend(result.notes)
    if result.method == "monte-carlo" and not result.converged:
        notes.append(
            f"shapley: the Monte Carlo run stopped at max_pairs = {policy.max_pairs} before its "
            f"widest interval reached {100 * policy.tolerance:g}% of the share "
            f"(+-{100 * result.widest:.3f}%)"
        )
    if ids and result.total <= 0:
        return fallback(f"the cost game is worth 0 ({tariff.label})")
    weights = shapley_weights(result.values)
    return _split(
        rule,
        rule,
        ids,
        amount_cents,
        weights,
        f"Shapley value ({tariff.label})",
        notes,
        rounded=True,
        shapley=result,
    )


def shapley_weights(values: np.ndarray) -> list[int]:
    """Integer weights from real Shapley values: their share of the sum in units of 2^-40.

    Negative values (possible only as Monte Carlo noise around 0) count as 0.
    """
    v = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    total = float(v.sum())
    if total <= 0:
        return [0] * len(v)
    return [int(w) for w in np.rint(v / total * SHAPLEY_QUANTUM)]
