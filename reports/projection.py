"""Month to date: the current month so far, with a projection of its bill.

``egress report --month current`` (optionally ``--as-of`` a moment) reports the local
calendar month that contains that moment, from its data up to the last complete bin, and
projects the bill:

- the projected billed 95th is the 95th percentile over the bins elapsed so far (under the
  configured semantics: with ``missing = "zero"`` the elapsed bins without data count as
  zero, the bins to come are not counted at all). It assumes the rest of the month will look
  like what has been seen;
- the projected invoice is the contract applied to that rate (or the operator's figure, if
  one was already entered for the month), and each member's projected share is that
  invoice split by the configured rule over the traffic so far.

Everything is labelled as a projection in every format: a banner in the table and the HTML,
a ``projection`` object in the JSON, a ``projected_as_of`` column in CSV and Parquet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from accounting.bins import BillingMonth, billing_month, month_of
from reports.monthly import MonthlyReport, ReportError, format_datetime
from reports.render.table import euros, human_rate
from reports.series import MonthSeries, load_month

METHOD = (
    "projected billed {p}th = the {p}th percentile over the bins elapsed so far (the rest of "
    "the month assumed to look like them); projected invoice = the contract applied to that "
    "rate; each member's projected share = that invoice split by the {rule} rule over the "
    "traffic so far"
)


@dataclass(frozen=True, eq=False)
class Projection:
    as_of: datetime  # UTC
    cutoff: datetime  # UTC: end of the last complete bin (data after it is ignored)
    elapsed_bins: int
    report: MonthlyReport  # the month so far, with the projected bill
    series: MonthSeries

    @property
    def month(self) -> BillingMonth:
        return self.report.month

    @property
    def fraction_elapsed(self) -> float:
        return self.elapsed_bins / self.month.bin_count

    def lines(self) -> list[str]:
        """The banner: what this is, as of when, and how it is computed."""
        r = self.report
        bill = r.bill
        zone = ZoneInfo(self.month.timezone)
        return [
            f"PROJECTION, month to date: {self.month.label} as of "
            f"{format_datetime(self.cutoff.astimezone(zone))} ({self.elapsed_bins:,} of "
            f"{self.month.bin_count:,} bins elapsed, {100 * self.fraction_elapsed:.1f}% of the "
            f"month; {r.bins_with_data:,} with data). Not a bill: the figures change until the "
            "month ends.",
            f"projected billed {r.percentile}th: "
            f"{human_rate(float(r.bps(bill.billed.bytes)))} ({bill.billed.direction}); "
            f"projected invoice {euros(bill.invoice_cents)} EUR, with the fee "
            f"{euros(bill.total_cents)} EUR",
            "method: " + METHOD.format(p=r.percentile, rule=bill.policy.rule),
        ]

    def as_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "as_of_utc": format_datetime(self.as_of),
            "data_until_utc": format_datetime(self.cutoff),
            "elapsed_bins": self.elapsed_bins,
            "bins_in_month": self.month.bin_count,
            "fraction_elapsed": self.fraction_elapsed,
            "projected_billed_bps": float(r.bps(r.bill.billed.bytes)),
            "projected_invoice_cents": r.bill.invoice_cents,
            "projected_total_cents": r.bill.total_cents,
            "method": METHOD.format(p=r.percentile, rule=r.bill.policy.rule),
        }


def parse_as_of(text: str | None, timezone: str) -> datetime:
    """'now' (or None), or an ISO time (local to ``timezone`` when it has no offset)."""
    if text is None or text == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--as-of must be 'now' or an ISO time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


def build_projection(config: Any, store: Any, as_of: datetime, on_read=None) -> Projection:
    """The month containing ``as_of`` (local), up to its last complete bin, projected."""
    billing = config.billing
    label = month_of(as_of, billing.timezone)
    month = billing_month(label, billing.timezone, billing.bin_seconds)
    elapsed = int((as_of - month.start_utc).total_seconds()) // month.bin_seconds
    elapsed = min(elapsed, month.bin_count)
    if elapsed < 1:
        raise ReportError(
            f"{label} has no complete {month.bin_seconds} s bin yet as of "
            f"{format_datetime(as_of)}: nothing to project"
        )
    cutoff = month.start_utc + timedelta(seconds=elapsed * month.bin_seconds)
    report, series = load_month(config, store, label, until=cutoff, on_read=on_read)
    report = _project(config, store, report, series, elapsed)
    return Projection(as_of, cutoff, elapsed, report, series)


def _project(
    config: Any, store: Any, report: MonthlyReport, series: MonthSeries, elapsed: int
) -> MonthlyReport:
    """The report with its bill over the elapsed bins only. With ``missing = "exclude"`` the
    report's own bill already is (bins without data are left out, elapsed or not)."""
    if config.billing.missing == "exclude":
        return report
    from accounting.billing import bill_month
    from accounting.sharing import prepare_usage

    prepared = prepare_usage(
        series.member_ids,
        series.inbound,
        series.outbound,
        config.semantics,
        bin_numbers=series.columns,
        bins_in_month=elapsed,
        other_in=series.other_in,
        other_out=series.other_out,
    )
    bill = bill_month(
        prepared,
        config.contract,
        config.member_terms(),
        config.sharing,
        actual_invoice_cents=store.invoice_for(report.month.label),
        month=report.month.label,
    )
    bills = {b.id: b for b in bill.members}
    members = [dataclasses.replace(m, bill=bills[m.id]) for m in report.members]
    notes = [n for n in report.notes if n not in report.bill.notes] + list(bill.notes)
    return dataclasses.replace(report, bill=bill, members=members, notes=notes)
