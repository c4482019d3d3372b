"""The monthly report: stored usage -> per-member volumes, 95th percentiles and the bill.

Pure data (dataclasses); the renderers in reports/render turn it into text, CSV or JSON.
The semantics (stated in every rendering, see accounting/sharing.py and billing.py):
- the month is the local calendar month of ``billing.timezone``, tiled by aligned UTC bins;
- a bin's rate is bytes * 8 / bin_seconds; percentiles are nearest-rank over the bins
  with data (or every bin of the month with ``missing = "zero"``);
- the aggregate that the operator bills is members plus unattributed traffic of known
  direction; internal traffic never crosses the uplink and is excluded;
- the bill: the invoice (modelled from [contract], or the operator's figure entered with
  ``egress invoice set``), the syndicate's fee, a fixed part and the usage part split by
  the chosen rule, every rule side by side, stand-alone costs and flat subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

import numpy as np
import polars as pl

from accounting.billing import Bill, MemberBill, bill_month
from accounting.bins import BillingMonth, billing_month
from accounting.config import Config
from accounting.percentile import percentile_rows
from accounting.sharing import prepare_usage
from accounting.store import Store
from collector.errors import EgressError


class ReportError(EgressError):
    """The report cannot be produced (e.g. no data for the month)."""


@dataclass(frozen=True, slots=True)
class MemberLine:
    id: str
    name: str
    bytes_in: int
    bytes_out: int
    p95_in_bytes: int  # bytes in the bin holding the member's own percentile
    p95_out_bytes: int
    bill: MemberBill
    in_configuration: bool = True

    @property
    def share_cents(self) -> int:
        """What the member pays for the month: its share of the invoice and of the fee."""
        return self.bill.total_cents


@dataclass(frozen=True, slots=True)
class ExporterLine:
    """One router's completeness over the month (from the per-bin exporter counters)."""

    address: str
    datagrams: int
    flows: int
    sequence_received: int  # export units (v5 flows, v9 packets, IPFIX records) received
    sequence_lost: int  # ... missing according to the export sequence numbers
    duplicates: int
    reordered: int

    @property
    def completeness(self) -> float | None:
        """Share of the exporter's data that arrived, from its sequence numbers."""
        total = self.sequence_received + max(self.sequence_lost, 0)
        return None if total == 0 else self.sequence_received / total


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    month: BillingMonth
    bill: Bill
    bins_with_data: int
    members: list[MemberLine]
    aggregate_in_bytes: int
    aggregate_out_bytes: int
    internal_bytes: int
    unattributed_in: int
    unattributed_out: int
    unattributed_none: int
    not_uplink_bytes: int
    exporters: list[ExporterLine] = field(default_factory=list)
    kernel_drops: int = 0
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def bin_seconds(self) -> int:
        return self.month.bin_seconds

    @property
    def percentile(self) -> int:
        return self.bill.semantics.percentile

    @property
    def direction_rule(self) -> str:
        return self.bill.semantics.direction

    @property
    def invoice_cents(self) -> int:
        return self.bill.invoice_cents

    @property
    def aggregate_p95_in_bytes(self) -> int:
        return self.bill.billed.p95_in

    @property
    def aggregate_p95_out_bytes(self) -> int:
        return self.bill.billed.p95_out

    @property
    def billed_direction(self) -> str:
        return self.bill.billed.direction

    def bps(self, bytes_per_bin: int) -> Fraction:
        """Exact rate in bit/s of a per-bin byte count."""
        return Fraction(bytes_per_bin * 8, self.bin_seconds)

    def bin_time(self, number: int | None) -> datetime | None:
        """Start (UTC) of the month's bin ``number``."""
        if number is None:
            return None
        from datetime import timedelta

        return self.month.start_utc + timedelta(seconds=number * self.bin_seconds)

    @property
    def missing_bins(self) -> int:
        return self.month.bin_count - self.bins_with_data

    @property
    def total_member_bytes(self) -> int:
        return sum(m.bytes_in + m.bytes_out for m in self.members)


def build_report(config: Config, store: Store, month_text: str) -> MonthlyReport:
    """Compute the report of ``month_text`` (YYYY-MM) from the store."""
    billing = config.billing
    month = billing_month(month_text, billing.timezone, billing.bin_seconds)
    usage = store.usage_between(month.start_utc, month.end_utc)
    if usage.height == 0:
        span = store.data_range()
        hint = (
            f" (data runs from {span[0]:%Y-%m-%d} to {span[1]:%Y-%m-%d} UTC)"
            if span
            else " (the database holds no usage yet)"
        )
        raise ReportError(f"no data for {month.label} in {store.path}{hint}")
    bin_ms = month.bin_seconds * 1000
    usage = usage.with_columns(
        ((pl.col("bin_start").dt.epoch("ms") - month.first_bin_ms) // bin_ms).alias("bin")
    )
    covered = np.unique(usage["bin"].to_numpy())
    n_bins = len(covered)

    configured = {m.id: m for m in config.members if _in_month(m, month)}
    members_seen = usage.filter(pl.col("bucket") == "member")["member_id"].unique().to_list()
    ids = list(configured) + sorted(set(members_seen) - set(configured))
    names = {**recorded_names(store), **{mid: m.name for mid, m in configured.items()}}
    per_bin = {d: _per_bin(usage, ids, covered, "member", d) for d in ("in", "out")}
    other = {d: _per_bin(usage, [""], covered, "unattributed", d)[0] for d in ("in", "out")}
    own_p95 = {d: percentile_rows(per_bin[d], billing.percentile) for d in ("in", "out")}

    prepared = prepare_usage(
        ids,
        per_bin["in"],
        per_bin["out"],
        config.semantics,
        bin_numbers=covered,
        bins_in_month=month.bin_count,
        other_in=other["in"],
        other_out=other["out"],
    )
    terms = config.member_terms()
    bill = bill_month(
        prepared,
        config.contract,
        terms,
        config.sharing,
        actual_invoice_cents=store.invoice_for(month.label),
        month=month.label,
    )
    bills = {b.id: b for b in bill.members}

    def bucket_bytes(bucket: str, direction: str | None = None) -> int:
        sel = usage.filter(pl.col("bucket") == bucket)
        if direction is not None:
            sel = sel.filter(pl.col("direction") == direction)
        return int(sel["bytes"].sum() or 0)

    notes = list(bill.notes)
    unknown = [mid for mid in ids if mid not in configured]
    if unknown:
        notes.append(
            "members with stored usage but not in the configuration for this month: "
            + ", ".join(unknown)
        )
    lines = [
        MemberLine(
            id=mid,
            name=names.get(mid, "(unknown member)"),
            bytes_in=int(per_bin["in"][i].sum()),
            bytes_out=int(per_bin["out"][i].sum()),
            p95_in_bytes=int(own_p95["in"][i]),
            p95_out_bytes=int(own_p95["out"][i]),
            bill=bills[mid],
            in_configuration=mid in configured,
        )
        for i, mid in enumerate(ids)
    ]
    counters: dict[str, dict[str, int]] = {}
    for row in store.counters_between(month.start_utc, month.end_utc).iter_rows(named=True):
        counters.setdefault(row["kind"], {})[row["reason"]] = int(row["count"])
    exporters, kernel_drops = _exporter_lines(store, month)
    return MonthlyReport(
        month=month,
        bill=bill,
        bins_with_data=n_bins,
        members=lines,
        aggregate_in_bytes=int(per_bin["in"].sum() + other["in"].sum()),
        aggregate_out_bytes=int(per_bin["out"].sum() + other["out"].sum()),
        internal_bytes=bucket_bytes("internal"),
        unattributed_in=bucket_bytes("unattributed", "in"),
        unattributed_out=bucket_bytes("unattributed", "out"),
        unattributed_none=bucket_bytes("unattributed", "none"),
        not_uplink_bytes=bucket_bytes("not_uplink"),
        exporters=exporters,
        kernel_drops=kernel_drops,
        counters=counters,
        notes=notes,
    )


def _in_month(member, month: BillingMonth) -> bool:
    """Whether a member's validity overlaps the month (local dates)."""
    first = month.start_local.date()
    last = (month.end_local - month.end_local.resolution).date()
    v = member.validity
    return (v.valid_from is None or v.valid_from <= last) and (
        v.valid_to is None or v.valid_to >= first
    )


def _per_bin(
    usage: pl.DataFrame, ids: list[str], covered: np.ndarray, bucket: str, direction: str
) -> np.ndarray:
    """Bytes per (id, covered bin) of one bucket and direction."""
    out = np.zeros((len(ids), len(covered)), np.int64)
    part = usage.filter((pl.col("bucket") == bucket) & (pl.col("direction") == direction))
    if part.height == 0:
        return out
    rows = pl.DataFrame({"member_id": ids, "row": np.arange(len(ids), dtype=np.int64)})
    part = part.join(rows, on="member_id")
    cols = np.searchsorted(covered, part["bin"].to_numpy())
    np.add.at(out, (part["row"].to_numpy(), cols), part["bytes"].to_numpy())
    return out


def recorded_names(store: Store) -> dict[str, str]:
    """Member names from every recorded registry version (the latest name wins), so a
    past month's report names members that have since left the configuration."""
    import json

    names: dict[str, str] = {}
    rows = store.con.execute(
        "SELECT registry_json FROM registry_versions ORDER BY version_id"
    ).fetchall()
    for (text,) in rows:
        for m in json.loads(text)["members"]:
            names[m["id"]] = m["name"]
    return names


def _exporter_lines(store: Store, month: BillingMonth) -> tuple[list[ExporterLine], int]:
    frame = store.exporter_counters_between(month.start_utc, month.end_utc)
    values: dict[str, dict[str, int]] = {}
    for row in frame.iter_rows(named=True):
        values.setdefault(row["exporter"], {})[row["counter"]] = int(row["value"])
    kernel = values.pop("*", {}).get("kernel_drops", 0)
    lines = [
        ExporterLine(
            address=address,
            datagrams=v.get("datagrams", 0),
            flows=v.get("flows", 0),
            sequence_received=v.get("sequence_received", 0),
            sequence_lost=v.get("sequence_lost", 0),
            duplicates=v.get("sequence_duplicates", 0),
            reordered=v.get("sequence_reordered", 0),
        )
        for address, v in sorted(values.items())
    ]
    return lines, kernel


def format_datetime(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
