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
    "billed_bytes",
    "share_cents",
)


def render_csv(report: MonthlyReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for m in report.members:
        writer.writerow(
            [
                report.month.label,
                m.id,
                m.name,
                m.bytes_in,
                m.bytes_out,
                f"{float(report.bps(m.p95_in_bytes)):.3f}",
                f"{float(report.bps(m.p95_out_bytes)):.3f}",
                m.billed_bytes,
                m.share_cents,
            ]
        )
    return out.getvalue()
