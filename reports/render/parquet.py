"""Tabular exports for spreadsheets and BI tools: the per-member table (Parquet) and the
per-bin usage of a month (Parquet or CSV).

The per-member frame has the CSV rendering's columns (reports/render/csv.py), typed:
integers for bytes and cents (null where the CSV leaves a cell empty), floats for rates.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from reports.monthly import MonthlyReport
from reports.render.csv import COLUMNS

USAGE_COLUMNS = (
    "bin_start",
    "bin_start_local",
    "bucket",
    "member_id",
    "direction",
    "bytes",
    "packets",
    "flows",
)


def member_frame(report: MonthlyReport, projected_as_of: datetime | None = None) -> pl.DataFrame:
    """One row per member, the CSV's columns (then one ``<rule>_cents`` column per rule)."""
    rules = list(report.bill.alternatives)
    members = report.members
    data: dict[str, pl.Series] = {
        "month": pl.Series([report.month.label] * len(members), dtype=pl.String),
        "member_id": pl.Series([m.id for m in members], dtype=pl.String),
        "name": pl.Series([m.name for m in members], dtype=pl.String),
        "bytes_in": pl.Series([m.bytes_in for m in members], dtype=pl.Int64),
        "bytes_out": pl.Series([m.bytes_out for m in members], dtype=pl.Int64),
        "p95_in_bps": pl.Series(
            [float(report.bps(m.p95_in_bytes)) for m in members], dtype=pl.Float64
        ),
        "p95_out_bps": pl.Series(
            [float(report.bps(m.p95_out_bytes)) for m in members], dtype=pl.Float64
        ),
        "invoice_cents": pl.Series([m.bill.invoice_cents for m in members], dtype=pl.Int64),
        "fee_cents": pl.Series([m.bill.fee_cents for m in members], dtype=pl.Int64),
        "share_cents": pl.Series([m.share_cents for m in members], dtype=pl.Int64),
        "standalone_cents": pl.Series([m.bill.standalone_cents for m in members], dtype=pl.Int64),
        "flat_cents": pl.Series([m.bill.flat_cents for m in members], dtype=pl.Int64),
        "balance_cents": pl.Series([m.bill.balance_cents for m in members], dtype=pl.Int64),
    }
    assert tuple(data) == COLUMNS
    for rule in rules:
        data[f"{rule}_cents"] = pl.Series(
            [m.bill.alternatives.get(rule) for m in members], dtype=pl.Int64
        )
    if projected_as_of is not None:
        data["projected_as_of"] = pl.Series(
            [projected_as_of.isoformat(timespec="seconds")] * len(members), dtype=pl.String
        )
    return pl.DataFrame(data)


def write_member_parquet(
    report: MonthlyReport, path: Path, projected_as_of: datetime | None = None
) -> None:
    member_frame(report, projected_as_of).write_parquet(path, compression="zstd")


def usage_frame(usage: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """The stored usage rows (``Store.usage_between``) as the export's columns: the bin's
    start in UTC and in local time, bucket (member, internal, unattributed, not_uplink),
    member id (empty outside members), direction (in, out, none), bytes, packets, flows."""
    frame = usage.with_columns(
        pl.col("bin_start").dt.convert_time_zone("UTC"),
        pl.col("bin_start")
        .dt.convert_time_zone(timezone)
        .dt.strftime("%Y-%m-%dT%H:%M:%S%:z")
        .alias("bin_start_local"),
    )
    return frame.select(USAGE_COLUMNS)


def write_usage(frame: pl.DataFrame, path: Path, fmt: str) -> None:
    """Parquet (typed, zstd) or CSV (UTC start as ISO 8601 with its offset)."""
    if fmt == "parquet":
        frame.write_parquet(path, compression="zstd")
    elif fmt == "csv":
        frame.with_columns(pl.col("bin_start").dt.strftime("%Y-%m-%dT%H:%M:%S%:z")).write_csv(path)
    else:
        raise ValueError(f"unknown usage export format {fmt!r}")
