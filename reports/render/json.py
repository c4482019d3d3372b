"""The monthly report as one JSON object (stable keys; amounts in integer cents)."""

from __future__ import annotations

import json
from typing import Any

from reports.monthly import MonthlyReport, format_datetime


def report_dict(report: MonthlyReport) -> dict[str, Any]:
    month = report.month
    return {
        "month": month.label,
        "timezone": month.timezone,
        "period": {
            "start_local": format_datetime(month.start_local),
            "end_local": format_datetime(month.end_local),
            "start_utc": format_datetime(month.start_utc),
            "end_utc": format_datetime(month.end_utc),
        },
        "method": {
            "bin_seconds": month.bin_seconds,
            "percentile": report.percentile,
            "percentile_definition": "nearest rank r = ceil(p*n/100) over bins with data",
            "direction_rule": report.direction_rule,
            "allocation": "volume in the billed direction, largest remainder in cents",
        },
        "bins": {
            "in_month": month.bin_count,
            "with_data": report.bins_with_data,
            "missing": report.missing_bins,
        },
        "invoice_cents": report.invoice_cents,
        "aggregate": {
            "bytes_in": report.aggregate_in_bytes,
            "bytes_out": report.aggregate_out_bytes,
            "p95_in_bps": float(report.bps(report.aggregate_p95_in_bytes)),
            "p95_out_bps": float(report.bps(report.aggregate_p95_out_bytes)),
            "billed_direction": report.billed_direction,
        },
        "members": [
            {
                "id": m.id,
                "name": m.name,
                "bytes_in": m.bytes_in,
                "bytes_out": m.bytes_out,
                "p95_in_bps": float(report.bps(m.p95_in_bytes)),
                "p95_out_bps": float(report.bps(m.p95_out_bytes)),
                "billed_bytes": m.billed_bytes,
                "share_cents": m.share_cents,
                "in_configuration": m.in_configuration,
            }
            for m in report.members
        ],
        "internal": {"bytes": report.internal_bytes},
        "unattributed": {
            "bytes_in": report.unattributed_in,
            "bytes_out": report.unattributed_out,
            "bytes_unknown_direction": report.unattributed_none,
        },
        "not_uplink": {"bytes": report.not_uplink_bytes},
        "totals": {
            "member_bytes": report.total_member_bytes,
            "share_cents": sum(m.share_cents for m in report.members),
        },
        "completeness": {
            "exporters": [
                {
                    "address": e.address,
                    "datagrams": e.datagrams,
                    "flows": e.flows,
                    "sequence_received": e.sequence_received,
                    "sequence_lost": e.sequence_lost,
                    "duplicates": e.duplicates,
                    "reordered": e.reordered,
                    "completeness": e.completeness,
                }
                for e in report.exporters
            ],
            "kernel_receive_buffer_drops": report.kernel_drops,
            "missing_bins": report.missing_bins,
        },
        "counters": report.counters,
        "notes": report.notes,
    }


def render_json(report: MonthlyReport) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"
