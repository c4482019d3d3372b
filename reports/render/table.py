"""The monthly report as aligned text for a terminal."""

from __future__ import annotations

from reports.monthly import MonthlyReport, format_datetime

RULE_LABELS = {"volume": "volume", "p95-own": "own P95", "p95-bin": "P95 bin", "shapley": "Shapley"}


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_rate(bps: float) -> str:
    for unit, scale in (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3f} {unit}"
    return f"{bps:.0f} b/s"


def euros(cents: int | None) -> str:
    if cents is None:
        return "-"
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100:,}.{cents % 100:02d}".replace(",", " ")


def _table(
    header: tuple, rows: list[tuple], right: set[int], total: tuple | None = None
) -> list[str]:
    widths = [
        max(len(str(r[i])) for r in [header, *rows, *([total] if total else [])])
        for i in range(len(header))
    ]

    def fmt(row) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [fmt(header), rule, *(fmt(r) for r in rows)]
    if total:
        out += [rule, fmt(total)]
    return out


def render_table(report: MonthlyReport) -> str:
    m = report.month
    bill = report.bill
    p = report.percentile
    lines = [
        f"egress report {m.label} ({m.timezone}): {format_datetime(m.start_local)} .. {format_datetime(m.end_local)}",
        f"  UTC {format_datetime(m.start_utc)} .. {format_datetime(m.end_utc)}",
        *(f"  {line}" for line in bill.summary()),
    ]
    billed_bin = report.bin_time(bill.billed_bins["billed"])
    if billed_bin is not None:
        lines.append(f"  the billed {p}th is set by the bin starting {format_datetime(billed_bin)}")
    lines.append("")
    header = ("member", "name", "in", "out", f"P{p} in", f"P{p} out", "pays EUR")
    rows = [
        (
            x.id,
            x.name,
            human_bytes(x.bytes_in),
            human_bytes(x.bytes_out),
            human_rate(float(report.bps(x.p95_in_bytes))),
            human_rate(float(report.bps(x.p95_out_bytes))),
            euros(x.share_cents),
        )
        for x in report.members
    ]
    rows.append(
        ("internal", "both ends inside the GFU", human_bytes(report.internal_bytes), "", "", "", "")
    )
    rows.append(
        (
            "unattributed",
            "no end in a member",
            human_bytes(report.unattributed_in),
            human_bytes(report.unattributed_out),
            f"+{human_bytes(report.unattributed_none)} unknown dir.",
            "",
            "",
        )
    )
    if report.not_uplink_bytes:
        rows.append(
            (
                "not_uplink",
                "crossed no declared uplink",
                human_bytes(report.not_uplink_bytes),
                "",
                "",
                "",
                "",
            )
        )
    total = (
        "total",
        "",
        human_bytes(sum(x.bytes_in for x in report.members)),
        human_bytes(sum(x.bytes_out for x in report.members)),
        "",
        "",
        euros(sum(x.share_cents for x in report.members)),
    )
    lines += _table(header, rows, {2, 3, 4, 5, 6}, total)

    rules = list(bill.alternatives)
    lines.append("")
    lines.append(
        f"shares of the invoice ({euros(bill.invoice_cents)} EUR) by rule, stand-alone cost, "
        f"flat subscription (chosen rule: {bill.policy.rule}; * = above its stand-alone cost)"
    )
    header2 = ("member", *(RULE_LABELS.get(r, r) for r in rules), "alone", "fee", "flat", "balance")
    rows2 = [
        (
            x.id,
            *(euros(x.bill.alternatives.get(r)) for r in rules),
            euros(x.bill.standalone_cents) + ("*" if x.bill.exceeds_standalone else ""),
            euros(x.bill.fee_cents),
            euros(x.bill.flat_cents),
            euros(x.bill.balance_cents),
        )
        for x in report.members
    ]
    lines += _table(header2, rows2, set(range(1, len(header2))))
    lines.append("")
    lines.append(
        f"completeness: {report.bins_with_data} of {m.bin_count} bins hold data; "
        f"kernel receive-buffer drops {report.kernel_drops:,}"
    )
    for e in report.exporters:
        share = "n/a" if e.completeness is None else f"{100 * e.completeness:.3f}%"
        lines.append(
            f"  exporter {e.address}: {e.datagrams:,} datagrams, {e.flows:,} flows, "
            f"sequence complete {share} ({e.sequence_lost:,} lost, {e.duplicates:,} duplicates)"
        )
    dropped = report.counters.get("dropped", {})
    if dropped:
        lines.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    for note in report.notes:
        lines.append(f"note: {note}")
    for rule, allocation in bill.alternatives.items():
        for note in allocation.notes:
            lines.append(f"note ({rule}): {note}")
        if allocation.shapley is not None:
            lines.append(f"note ({rule}): {allocation.shapley.describe()}")
    lines.append(f"reproducibility: {bill.reproducibility()}")
    return "\n".join(lines) + "\n"
