"""The month's bill: from usage and the contract to every member's cents, and why.

``bill_month`` puts the pieces together, in this order:

1. the billed 95th of the aggregate (``sharing.billed``) and the modelled invoice
   (``ContractModel.invoice_cents``); the operator's actual figure, when given, takes
   precedence and the modelled one is kept beside it;
2. the syndicate's management fee on top of the invoice (shown separately);
3. the fixed part of the invoice, split by the contract's ``fixed_weights``;
4. the rest (the usage part), split by the policy's rule, and, for comparison, by every
   rule of ``policy.compare`` (same amount, same fixed part);
5. the fee, split in proportion to each member's share of the invoice or by weights;
6. per member: the stand-alone cost (the contract applied to its own billed 95th alone),
   flagged when its share of the invoice exceeds it, and its flat subscription beside what
   it is allocated (recovery ratio: positive balance = it pays more than its cost and
   subsidises others);
7. the reproducibility line: rule, seed and samples, software version, and a hash of the
   usage (member ids, bin numbers, semantics and every byte count).

Every amount is integer cents; each split sums exactly to its amount (largest remainder,
ties by member id), so the members' totals sum exactly to invoice + fee.

Typical use (the report)::

    contract, problems = ContractModel.from_mapping(raw["contract"])       # [contract]
    policy, problems = SharingPolicy.from_mapping(raw.get("sharing"))      # [sharing]
    terms = {m["id"]: MemberTerms.from_mapping(m["id"], m, where)[0] ...}  # [[members]]
    usage = prepare_usage(ids, per_bin_in, per_bin_out,
                          Semantics(percentile, direction, missing, bin_seconds),
                          bin_numbers=covered_bins, bins_in_month=month.bin_count,
                          other_in=unattributed_in, other_out=unattributed_out)
    bill = bill_month(usage, contract, terms, policy,
                      actual_invoice_cents=operator_figure_or_None, month=month.label)
    bill.summary(); bill.members; bill.alternatives; bill.notes; bill.reproducibility()

Only the ``shapley`` rule imports numba (lazily); the rest is numpy and fractions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from accounting.allocation import split_or_equal
from accounting.contract import ContractModel, MemberTerms, format_cents, mbps_of, weights_for
from accounting.sharing import (
    Allocation,
    Billed,
    Semantics,
    SharingPolicy,
    Usage,
    allocate,
    billed,
    split_by_weights,
    standalone_bytes,
)


@dataclass(frozen=True, slots=True)
class MemberBill:
    id: str
    fixed_cents: int  # its part of the fixed part of the invoice
    usage_cents: int  # its part of the usage part, under the chosen rule
    fee_cents: int  # its part of the syndicate's fee
    standalone_bytes: int  # its own billed 95th, bytes per bin
    standalone_cents: int  # what it would pay alone under the contract
    flat_cents: int | None  # what it pays today (flat subscription), if known
    alternatives: Mapping[str, int] = field(default_factory=dict)  # invoice share per rule

    @property
    def invoice_cents(self) -> int:
        return self.fixed_cents + self.usage_cents

    @property
    def total_cents(self) -> int:
        return self.invoice_cents + self.fee_cents

    @property
    def exceeds_standalone(self) -> bool:
        """Its share of the invoice is more than it would pay alone."""
        return self.invoice_cents > self.standalone_cents

    @property
    def recovery(self) -> Fraction | None:
        """Flat subscription / allocated total (> 1: it pays more than its cost)."""
        if self.flat_cents is None or self.total_cents == 0:
            return None
        return Fraction(self.flat_cents, self.total_cents)

    @property
    def balance_cents(self) -> int | None:
        """Flat subscription - allocated total (> 0: it subsidises others)."""
        return None if self.flat_cents is None else self.flat_cents - self.total_cents


@dataclass(frozen=True, eq=False)
class Bill:
    month: str | None
    semantics: Semantics
    contract: ContractModel
    policy: SharingPolicy
    billed: Billed
    billed_mbps: Fraction
    bins_in_month: int
    bins_missing: int
    modelled_invoice_cents: int
    actual_invoice_cents: int | None
    fee_cents: int
    fixed_cents: int
    usage_cents: int
    members: tuple[MemberBill, ...]
    allocation: Allocation  # the usage part under the chosen rule
    fixed: Allocation
    fee: Allocation
    alternatives: Mapping[str, Allocation]  # the usage part under each compared rule
    notes: tuple[str, ...]
    input_hash: str
    version: str
    seconds: Mapping[str, float]
    columns: np.ndarray  # month bin number of each column of the usage

    @property
    def billed_bins(self) -> dict[str, int | None]:
        """Month bin number (0 = the month's first bin) that set the 95th, per direction
        ('in', 'out', 'in+out') and for the billed value ('billed'); None without bins.
        The bin starts at month.start_utc + number * bin_seconds."""
        b = self.billed

        def number(column: int) -> int | None:
            return int(self.columns[column]) if column >= 0 else None

        return {
            "in": number(b.bin_in),
            "out": number(b.bin_out),
            "in+out": number(b.bin_sum),
            "billed": number(b.bin),
        }

    @property
    def invoice_cents(self) -> int:
        if self.actual_invoice_cents is not None:
            return self.actual_invoice_cents
        return self.modelled_invoice_cents

    @property
    def total_cents(self) -> int:
        return self.invoice_cents + self.fee_cents

    def reproducibility(self) -> str:
        """One line that lets anyone recompute the shares."""
        parts = [f"rule {self.policy.rule}"]
        if self.allocation.fell_back:
            parts[0] += f" (fell back to {self.allocation.used})"
        result = self.allocation.shapley
        if result is None:
            result = next(
                (a.shapley for a in self.alternatives.values() if a.shapley is not None), None
            )
        if result is not None:
            parts.append(f"game {self.policy.game}")
            if result.method == "exact":
                parts.append(f"Shapley exact over 2^{result.players} coalitions")
            else:
                parts.append(
                    f"Shapley Monte Carlo seed {result.seed}, {result.permutations} join orders "
                    f"({result.pairs} antithetic pairs), widest 95% interval "
                    f"+-{100 * result.widest:.3f}% of the share"
                )
        if self.policy.band_bins:
            parts.append(f"p95-bin band +-{self.policy.band_bins} bins")
        parts.append(f"egress {self.version}")
        parts.append(f"usage blake2b {self.input_hash}")
        return "; ".join(parts)

    def summary(self) -> list[str]:
        """The bill's header lines, in words."""
        b = self.billed
        sem = self.semantics
        lines = [*sem.describe()]
        lines.append(
            f"bins: {b.bins} used of {self.bins_in_month} in the month, "
            f"{self.bins_missing} without data"
        )
        lines.append(
            f"aggregate {sem.percentile}th: in {float(mbps_of(b.p95_in, sem.bin_seconds)):.3f} "
            f"Mb/s, out {float(mbps_of(b.p95_out, sem.bin_seconds)):.3f} Mb/s; billed "
            f"{b.direction} {float(self.billed_mbps):.3f} Mb/s"
        )
        lines.extend(self.contract.describe())
        lines.extend(self.contract.invoice_lines(self.billed_mbps))
        lines.append(f"modelled invoice {format_cents(self.modelled_invoice_cents)}")
        if self.actual_invoice_cents is not None:
            lines.append(
                f"operator's invoice {format_cents(self.actual_invoice_cents)} (used; modelled "
                f"{format_cents(self.modelled_invoice_cents)})"
            )
        lines.append(
            f"fee {format_cents(self.fee_cents)}; fixed part {format_cents(self.fixed_cents)}; "
            f"usage part {format_cents(self.usage_cents)} by {self.policy.rule}"
        )
        return lines


def usage_hash(usage: Usage) -> str:
    """blake2b-128 of the usage: ids, semantics, bin numbers, every byte count."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((usage.member_ids, usage.semantics, usage.bins_in_month)).encode())
    for array in (
        usage.columns,
        usage.inbound,
        usage.outbound,
        usage.other_in,
        usage.other_out,
    ):
        h.update(np.ascontiguousarray(array, dtype=np.int64))
    return h.hexdigest()


def software_version() -> str:
    try:
        from importlib.metadata import version

        return version("egress")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


def bill_month(
    usage: Usage,
    contract: ContractModel,
    terms: Mapping[str, MemberTerms] | None = None,
    policy: SharingPolicy | None = None,
    *,
    actual_invoice_cents: int | None = None,
    month: str | None = None,
) -> Bill:
    """The month's bill (see the module docstring); ``policy`` defaults to SharingPolicy()."""
    policy = policy or SharingPolicy()
    terms = terms or {}
    ids = usage.member_ids
    sem = usage.semantics
    seconds: dict[str, float] = {}
    notes: list[str] = []
    b = billed(usage)
    rate = b.mbps(sem.bin_seconds)
    modelled = contract.invoice_cents(rate)
    invoice = modelled if actual_invoice_cents is None else actual_invoice_cents
    if invoice < 0:
        raise ValueError("the invoice must be >= 0")
    if actual_invoice_cents is not None and actual_invoice_cents != modelled:
        notes.append(
            f"the operator's invoice ({format_cents(actual_invoice_cents)}) differs from the "
            f"modelled one ({format_cents(modelled)}) by "
            f"{format_cents(actual_invoice_cents - modelled)}"
        )
    if not ids:
        notes.append("no members: nothing is allocated")
    fee = contract.fee(invoice)
    fixed_amount, capped = contract.fixed_part(invoice)
    if capped:
        notes.append(capped)
    usage_amount = invoice - fixed_amount
    fixed = split_by_weights(
        fixed_amount,
        ids,
        weights_for(contract.fixed_weights, ids, terms),
        f"fixed:{contract.fixed_weights}",
    )
    if fixed_amount and fixed.notes:
        notes.extend(fixed.notes)
    tariff = contract.game_tariff(policy.game, sem.bin_seconds)
    alternatives: dict[str, Allocation] = {}
    for rule in (policy.rule, *(r for r in policy.compare if r != policy.rule)):
        started = time.perf_counter()
        alternatives[rule] = allocate(
            rule, usage, usage_amount, policy, tariff=tariff, billed_value=b
        )
        seconds[rule] = time.perf_counter() - started
    chosen = alternatives[policy.rule]
    notes.extend(chosen.notes)
    invoice_share = {mid: f + u for mid, f, u in zip(ids, fixed.cents, chosen.cents, strict=True)}
    if contract.fee_weights == "share":
        fee_split, _ = split_or_equal(fee, invoice_share)
        fee_alloc = Allocation(
            "fee:share",
            ids,
            tuple(fee_split[i] for i in ids),
            tuple(invoice_share[i] for i in ids),
            "each member's share of the invoice",
            "fee:share",
            fee,
        )
    else:
        fee_alloc = split_by_weights(
            fee, ids, weights_for(contract.fee_weights, ids, terms), f"fee:{contract.fee_weights}"
        )
    own = standalone_bytes(usage)
    cache: dict[int, int] = {}
    members = []
    for k, mid in enumerate(ids):
        own_bytes = int(own[k])
        if own_bytes not in cache:
            cache[own_bytes] = contract.invoice_cents(mbps_of(own_bytes, sem.bin_seconds))
        t = terms.get(mid)
        members.append(
            MemberBill(
                id=mid,
                fixed_cents=fixed.cents[k],
                usage_cents=chosen.cents[k],
                fee_cents=fee_alloc.cents[k],
                standalone_bytes=own_bytes,
                standalone_cents=cache[own_bytes],
                flat_cents=t.flat_monthly_cents if t else None,
                alternatives={
                    rule: fixed.cents[k] + a.cents[k] for rule, a in alternatives.items()
                },
            )
        )
    over = [m.id for m in members if m.exceeds_standalone]
    if over:
        notes.append(
            "share of the invoice above the stand-alone cost (what it would pay alone): "
            + ", ".join(over)
        )
    started = time.perf_counter()
    digest = usage_hash(usage)
    seconds["hash"] = time.perf_counter() - started
    return Bill(
        month=month,
        semantics=sem,
        contract=contract,
        policy=policy,
        billed=b,
        billed_mbps=rate,
        bins_in_month=usage.bins_in_month,
        bins_missing=usage.bins_missing,
        modelled_invoice_cents=modelled,
        actual_invoice_cents=actual_invoice_cents,
        fee_cents=fee,
        fixed_cents=fixed_amount,
        usage_cents=usage_amount,
        members=tuple(members),
        allocation=chosen,
        fixed=fixed,
        fee=fee_alloc,
        alternatives=alternatives,
        notes=tuple(dict.fromkeys(notes)),
        input_hash=digest,
        version=software_version(),
        seconds=seconds,
        columns=usage.columns,
    )
