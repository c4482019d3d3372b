"""The per-member table of a monthly report as CSV (one header line, one line per member)."""

from __future__ import annotations

import csv
import io

from reports.monthly import MonthlyReport

COLUMNS = (
    "month",
    "member_id",
    "name",
    "bytes_in",
    "bytes_out",
    "p95_in_bps",
    "p95_out_bps",
    "invoice_cents",
    "fee_cents",
    "share_cents",
    "standalone_cents",
    "flat_cents",
    "balance_cents",
)


def render_csv(report: MonthlyReport, extra: dict[str, str] | None = None) -> str:
    """``extra``: more columns, the same value on every line (e.g. ``projected_as_of``)."""
    rules = list(report.bill.alternatives)
    extra = extra or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, *(f"{rule}_cents" for rule in rules), *extra])
    for m in report.members:
        b = m.bill
        writer.writerow(
            [
                report.month.label,
                m.id,
                m.name,
                m.bytes_in,
                m.bytes_out,
                f"{float(report.bps(m.p95_in_bytes)):.3f}",
                f"{float(report.bps(m.p95_out_bytes)):.3f}",
                b.invoice_cents,
                b.fee_cents,
                m.share_cents,
                b.standalone_cents,
                "" if b.flat_cents is None else b.flat_cents,
                "" if b.balance_cents is None else b.balance_cents,
                *(b.alternatives.get(rule, "") for rule in rules),
                *extra.values(),
            ]
        )
    return out.getvalue()
