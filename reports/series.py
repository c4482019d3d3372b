"""Per-bin series of a month, for the charts, the statements and the month-to-date projection.

``MonthlyReport`` keeps totals and the bill, not the per-bin traffic. The charts need it, so
``load_month`` builds the report and the series from one read of the month's usage: the
store is wrapped so that ``build_report`` and ``month_series`` share the same rows.
The series follow the report's rules (reports/monthly.py): members' bytes per covered bin
and direction, and "other" traffic (unattributed, of known direction) that counts in the
aggregate the operator bills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from accounting.bins import BillingMonth


class SharedUsageStore:
    """A Store whose ``usage_between`` answers each (start, end) from one query.

    ``until`` (UTC) cuts every time-range query there (a month so far); ``on_read`` is
    called after each query of usage (progress lines).
    """

    def __init__(self, store: Any, *, until: datetime | None = None, on_read=None) -> None:
        self._store = store
        self._until = until
        self._on_read = on_read
        self._usage: dict[tuple[datetime, datetime], pl.DataFrame] = {}

    def _end(self, end: datetime) -> datetime:
        return end if self._until is None else min(end, self._until)

    def usage_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        key = (start, self._end(end))
        if key not in self._usage:
            self._usage[key] = self._store.usage_between(*key)
            if self._on_read is not None:
                self._on_read()
        return self._usage[key]

    def counters_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        return self._store.counters_between(start, self._end(end))

    def exporter_counters_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        return self._store.exporter_counters_between(start, self._end(end))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass(frozen=True, eq=False)
class MonthSeries:
    """Bytes per bin of a month: one row per member (in the report's order), one column
    per bin that holds data (``columns``: month bin numbers, ascending)."""

    month: BillingMonth
    member_ids: tuple[str, ...]
    columns: np.ndarray  # int64[C]
    inbound: np.ndarray  # int64[M, C]
    outbound: np.ndarray  # int64[M, C]
    other_in: np.ndarray  # int64[C]: unattributed traffic of known direction
    other_out: np.ndarray

    @property
    def bin_seconds(self) -> int:
        return self.month.bin_seconds

    def row(self, member_id: str) -> int:
        return self.member_ids.index(member_id)

    def members(self, direction: str) -> np.ndarray:
        """int64[M, C] of 'in', 'out' or 'in+out'."""
        if direction == "in":
            return self.inbound
        if direction == "out":
            return self.outbound
        return self.inbound + self.outbound

    def other(self, direction: str) -> np.ndarray:
        if direction == "in":
            return self.other_in
        if direction == "out":
            return self.other_out
        return self.other_in + self.other_out

    def aggregate(self, direction: str) -> np.ndarray:
        """int64[C]: what the operator bills, members + other traffic."""
        return self.members(direction).sum(axis=0) + self.other(direction)

    def dense(self, values: np.ndarray, bins: int | None = None, fill: float = np.nan):
        """A covered-columns series spread over the month's first ``bins`` bins (default
        all), as float64 with ``fill`` where a bin holds no data."""
        n = self.month.bin_count if bins is None else bins
        out = np.full((*values.shape[:-1], n), fill, dtype=np.float64)
        keep = self.columns < n
        out[..., self.columns[keep]] = values[..., keep]
        return out

    def column_of(self, bin_number: int | None) -> int | None:
        """Index of a month bin among the columns (None if it holds no data)."""
        if bin_number is None:
            return None
        k = int(np.searchsorted(self.columns, bin_number))
        return k if k < len(self.columns) and self.columns[k] == bin_number else None


def month_series(
    store: Any, month: BillingMonth, member_ids: list[str] | tuple[str, ...]
) -> MonthSeries:
    """The month's per-bin bytes of ``member_ids`` (usually ``[m.id for m in report.members]``)
    and of unattributed traffic."""
    usage = store.usage_between(month.start_utc, month.end_utc)
    bin_ms = month.bin_seconds * 1000
    usage = usage.with_columns(
        ((pl.col("bin_start").dt.epoch("ms") - month.first_bin_ms) // bin_ms).alias("bin")
    )
    covered = np.unique(usage["bin"].to_numpy()).astype(np.int64)
    ids = tuple(member_ids)

    def per_bin(names: tuple[str, ...], bucket: str, direction: str) -> np.ndarray:
        out = np.zeros((len(names), len(covered)), np.int64)
        part = usage.filter((pl.col("bucket") == bucket) & (pl.col("direction") == direction))
        if part.height == 0 or not names:
            return out
        rows = pl.DataFrame({"member_id": list(names), "row": np.arange(len(names))})
        part = part.join(rows, on="member_id")
        cols = np.searchsorted(covered, part["bin"].to_numpy())
        np.add.at(out, (part["row"].to_numpy(), cols), part["bytes"].to_numpy())
        return out

    return MonthSeries(
        month=month,
        member_ids=ids,
        columns=covered,
        inbound=per_bin(ids, "member", "in"),
        outbound=per_bin(ids, "member", "out"),
        other_in=per_bin(("",), "unattributed", "in")[0],
        other_out=per_bin(("",), "unattributed", "out")[0],
    )


def load_month(config: Any, store: Any, month: str, *, until=None, on_read=None):
    """(MonthlyReport, MonthSeries) of ``month`` from one read of its usage; ``until``
    (UTC) ignores what comes after it (month to date)."""
    from reports.monthly import build_report

    shared = SharedUsageStore(store, until=until, on_read=on_read)
    report = build_report(config, shared, month)
    series = month_series(shared, report.month, [m.id for m in report.members])
    return report, series
