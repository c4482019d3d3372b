"""The monthly report as one JSON object (stable keys; amounts in integer cents)."""

from __future__ import annotations

import json
from typing import Any

from reports.monthly import MonthlyReport, format_datetime


def _rate(report: MonthlyReport, bytes_per_bin: int) -> float:
    return float(report.bps(bytes_per_bin))


def report_dict(report: MonthlyReport) -> dict[str, Any]:
    month = report.month
    bill = report.bill
    billed_bins = {
        key: None
        if number is None
        else {"number": number, "start_utc": format_datetime(report.bin_time(number))}
        for key, number in bill.billed_bins.items()
    }
    alternatives = {}
    for rule, allocation in bill.alternatives.items():
        entry: dict[str, Any] = {
            "used": allocation.used,
            "basis": allocation.basis,
            "notes": list(allocation.notes),
        }
        halfwidth = allocation.halfwidth_cents()
        if halfwidth is not None:
            entry["halfwidth_cents"] = dict(zip(allocation.member_ids, halfwidth, strict=True))
        if allocation.shapley is not None:
            entry["method"] = allocation.shapley.describe()
        alternatives[rule] = entry
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
            "percentile_definition": "nearest rank r = ceil(p*n/100) over the bins counted",
            "direction_rule": report.direction_rule,
            "missing_bins": bill.semantics.missing,
            "rule": bill.policy.rule,
            "compared_rules": list(bill.alternatives),
            "semantics": bill.semantics.describe(),
        },
        "bins": {
            "in_month": month.bin_count,
            "with_data": report.bins_with_data,
            "missing": report.missing_bins,
            "used": bill.billed.bins,
        },
        "invoice_cents": bill.invoice_cents,
        "invoice": {
            "modelled_cents": bill.modelled_invoice_cents,
            "actual_cents": bill.actual_invoice_cents,
            "used_cents": bill.invoice_cents,
            "fee_cents": bill.fee_cents,
            "fixed_cents": bill.fixed_cents,
            "usage_cents": bill.usage_cents,
            "total_cents": bill.total_cents,
            "summary": bill.summary(),
        },
        "aggregate": {
            "bytes_in": report.aggregate_in_bytes,
            "bytes_out": report.aggregate_out_bytes,
            "p95_in_bps": _rate(report, bill.billed.p95_in),
            "p95_out_bps": _rate(report, bill.billed.p95_out),
            "billed_direction": bill.billed.direction,
            "billed_bps": _rate(report, bill.billed.bytes),
            "billed_bins": billed_bins,
        },
        "members": [
            {
                "id": m.id,
                "name": m.name,
                "bytes_in": m.bytes_in,
                "bytes_out": m.bytes_out,
                "p95_in_bps": _rate(report, m.p95_in_bytes),
                "p95_out_bps": _rate(report, m.p95_out_bytes),
                "share_cents": m.share_cents,
                "invoice_cents": m.bill.invoice_cents,
                "fixed_cents": m.bill.fixed_cents,
                "usage_cents": m.bill.usage_cents,
                "fee_cents": m.bill.fee_cents,
                "alternatives_cents": dict(m.bill.alternatives),
                "standalone_cents": m.bill.standalone_cents,
                "exceeds_standalone": m.bill.exceeds_standalone,
                "flat_cents": m.bill.flat_cents,
                "recovery": None if m.bill.recovery is None else float(m.bill.recovery),
                "balance_cents": m.bill.balance_cents,
                "in_configuration": m.in_configuration,
            }
            for m in report.members
        ],
        "allocation": {
            "rule": bill.allocation.rule,
            "used": bill.allocation.used,
            "basis": bill.allocation.basis,
            "notes": list(bill.allocation.notes),
        },
        "alternatives": alternatives,
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
        "reproducibility": bill.reproducibility(),
    }


def render_json(report: MonthlyReport) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"
