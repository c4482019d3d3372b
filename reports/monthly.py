"""The monthly report: from stored usage to per-member volumes, 95th percentiles and shares.

Pure data (dataclasses); the renderers in reports/render turn it into text, CSV or JSON.
Semantics (stated in every rendering):
- the month is the local calendar month of ``billing.timezone``, tiled by aligned UTC bins;
- percentiles are nearest-rank over the bins that hold data (bins with no data at all are
  missing and excluded; their number is shown);
- a bin's rate is bytes * 8 / bin_seconds;
- the aggregate that the operator bills is members plus unattributed traffic of known
  direction; internal traffic never crosses the uplink and is excluded;
- shares split the monthly invoice in proportion to each member's bytes in the billed
  direction (``max``: the direction whose aggregate 95th is higher; ``sum``: in + out),
  by the largest-remainder method in integer cents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

import numpy as np
import polars as pl

from accounting.allocation import split_volume
from accounting.bins import BillingMonth, billing_month
from accounting.config import Config
from accounting.percentile import percentile_rows, percentile_value
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
    p95_in_bytes: int  # bytes in the bin holding the percentile
    p95_out_bytes: int
    billed_bytes: int  # the volume the share is proportional to
    share_cents: int
    in_configuration: bool = True


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
    percentile: int
    direction_rule: str
    invoice_cents: int
    bins_with_data: int
    members: list[MemberLine]
    aggregate_in_bytes: int
    aggregate_out_bytes: int
    aggregate_p95_in_bytes: int
    aggregate_p95_out_bytes: int
    billed_direction: str  # 'in', 'out' or 'in+out'
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

    def bps(self, bytes_per_bin: int) -> Fraction:
        """Exact rate in bit/s of a per-bin byte count."""
        return Fraction(bytes_per_bin * 8, self.bin_seconds)

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

    configured = {m.id: m.name for m in config.members}
    members_seen = usage.filter(pl.col("bucket") == "member")["member_id"].unique().to_list()
    ids = [m.id for m in config.members] + sorted(set(members_seen) - set(configured))
    row_of = {mid: i for i, mid in enumerate(ids)}
    id_rows = pl.DataFrame({"member_id": ids, "row": np.arange(len(ids), dtype=np.int64)})
    per_bin = {d: np.zeros((len(ids), n_bins), np.int64) for d in ("in", "out")}
    member_rows = usage.filter(pl.col("bucket") == "member").join(id_rows, on="member_id")
    for direction in ("in", "out"):
        part = member_rows.filter(pl.col("direction") == direction)
        cols = np.searchsorted(covered, part["bin"].to_numpy())
        np.add.at(per_bin[direction], (part["row"].to_numpy(), cols), part["bytes"].to_numpy())

    def bucket_bytes(bucket: str, direction: str | None = None) -> int:
        sel = usage.filter(pl.col("bucket") == bucket)
        if direction is not None:
            sel = sel.filter(pl.col("direction") == direction)
        return int(sel["bytes"].sum() or 0)

    unattributed_bins = {}
    for direction in ("in", "out"):
        vec = np.zeros(n_bins, np.int64)
        part = usage.filter(
            (pl.col("bucket") == "unattributed") & (pl.col("direction") == direction)
        )
        if part.height:
            np.add.at(
                vec, np.searchsorted(covered, part["bin"].to_numpy()), part["bytes"].to_numpy()
            )
        unattributed_bins[direction] = vec
    aggregate = {d: per_bin[d].sum(axis=0) + unattributed_bins[d] for d in ("in", "out")}
    agg_p95 = {d: int(percentile_value(aggregate[d], billing.percentile)) for d in ("in", "out")}
    own_p95 = {d: percentile_rows(per_bin[d], billing.percentile) for d in ("in", "out")}
    volume_in = per_bin["in"].sum(axis=1)
    volume_out = per_bin["out"].sum(axis=1)

    rule = billing.direction
    if rule == "max":
        billed_direction = "out" if agg_p95["out"] > agg_p95["in"] else "in"
    elif rule == "sum":
        billed_direction = "in+out"
    else:
        billed_direction = rule
    billed_volume = {
        "in": volume_in,
        "out": volume_out,
        "in+out": volume_in + volume_out,
    }[billed_direction]
    shares, fallback = split_volume(
        config.contract.monthly_cents, {mid: int(billed_volume[row_of[mid]]) for mid in ids}
    )
    notes = [fallback] if fallback else []
    unknown = [mid for mid in ids if mid not in configured]
    if unknown:
        notes.append(
            "members with stored usage but absent from the configuration: " + ", ".join(unknown)
        )
    lines = [
        MemberLine(
            id=mid,
            name=configured.get(mid, "(not in configuration)"),
            bytes_in=int(volume_in[i]),
            bytes_out=int(volume_out[i]),
            p95_in_bytes=int(own_p95["in"][i]),
            p95_out_bytes=int(own_p95["out"][i]),
            billed_bytes=int(billed_volume[i]),
            share_cents=shares[mid],
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
        percentile=billing.percentile,
        direction_rule=rule,
        invoice_cents=config.contract.monthly_cents,
        bins_with_data=n_bins,
        members=lines,
        aggregate_in_bytes=int(aggregate["in"].sum()),
        aggregate_out_bytes=int(aggregate["out"].sum()),
        aggregate_p95_in_bytes=agg_p95["in"],
        aggregate_p95_out_bytes=agg_p95["out"],
        billed_direction=billed_direction,
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
