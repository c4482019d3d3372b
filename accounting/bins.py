"""Time bins and billing months: aligned UTC bins, local calendar months with UTC bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from collector.errors import EgressError

MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")


class MonthError(EgressError, ValueError):
    """A --month value that is not YYYY-MM, or a month the bins cannot tile."""


@dataclass(frozen=True, slots=True)
class BillingMonth:
    """A local calendar month and the aligned UTC bins that tile it exactly."""

    label: str  # "2026-11"
    timezone: str
    start_local: datetime
    end_local: datetime
    start_utc: datetime
    end_utc: datetime
    bin_seconds: int

    @property
    def bin_count(self) -> int:
        return int((self.end_utc - self.start_utc).total_seconds()) // self.bin_seconds

    @property
    def first_bin_ms(self) -> int:
        return int(self.start_utc.timestamp()) * 1000

    def bin_index(self, epoch_ms):
        """Bin number within the month of a unix-ms time (works on numpy arrays)."""
        return (epoch_ms - self.first_bin_ms) // (self.bin_seconds * 1000)


def parse_month(text: str) -> tuple[int, int]:
    match = MONTH_PATTERN.match(text.strip())
    if not match:
        raise MonthError(f"--month must look like 2026-11 (YYYY-MM), got {text!r}")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or year < 1970:
        raise MonthError(f"--month {text!r} is not a valid month")
    return year, month


def billing_month(text: str, timezone: str, bin_seconds: int) -> BillingMonth:
    """The month ``YYYY-MM`` in ``timezone``; its UTC bounds must fall on bin boundaries."""
    year, month = parse_month(text)
    zone = ZoneInfo(timezone)
    start_local = datetime(year, month, 1, tzinfo=zone)
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    end_local = datetime(nxt[0], nxt[1], 1, tzinfo=zone)
    start_utc = start_local.astimezone(UTC)
    end_utc = end_local.astimezone(UTC)
    for bound in (start_utc, end_utc):
        if int(bound.timestamp()) % bin_seconds:
            raise MonthError(
                f"{bound.isoformat()} (a bound of {text} in {timezone}) is not on a "
                f"{bin_seconds} s bin boundary; choose bin_seconds dividing the zone's UTC offset"
            )
    return BillingMonth(
        f"{year:04d}-{month:02d}", timezone, start_local, end_local, start_utc, end_utc, bin_seconds
    )


def month_of(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.year:04d}-{local.month:02d}"


def utc_from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
