"""The monthly report as aligned text for a terminal."""

from __future__ import annotations

from reports.monthly import MonthlyReport, format_datetime


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


def euros(cents: int) -> str:
    return f"{cents // 100:,}.{cents % 100:02d} EUR".replace(",", " ")


def render_table(report: MonthlyReport) -> str:
    m = report.month
    lines = [
        f"egress report {m.label} ({m.timezone}): "
        f"{format_datetime(m.start_local)} .. {format_datetime(m.end_local)}",
        f"  UTC {format_datetime(m.start_utc)} .. {format_datetime(m.end_utc)}; "
        f"{m.bin_count} bins of {m.bin_seconds} s, {report.bins_with_data} with data, "
        f"{report.missing_bins} missing (excluded)",
        f"  P{report.percentile} nearest rank; direction rule {report.direction_rule} -> billed "
        f"{report.billed_direction}; aggregate P{report.percentile} in "
        f"{human_rate(float(report.bps(report.aggregate_p95_in_bytes)))}, out "
        f"{human_rate(float(report.bps(report.aggregate_p95_out_bytes)))}",
        f"  invoice {euros(report.invoice_cents)} shared by volume in the billed direction",
        "",
    ]
    header = (
        "member",
        "name",
        "in",
        "out",
        f"P{report.percentile} in",
        f"P{report.percentile} out",
        "share",
    )
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
        ("internal", "both ends in members", human_bytes(report.internal_bytes), "", "", "", "")
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
    rows.append(
        (
            "total",
            "",
            human_bytes(sum(x.bytes_in for x in report.members)),
            human_bytes(sum(x.bytes_out for x in report.members)),
            "",
            "",
            euros(sum(x.share_cents for x in report.members)),
        )
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4, 5, 6}

    def fmt(row) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    lines.append(fmt(header))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in rows[:-1])
    lines.append("  ".join("-" * w for w in widths))
    lines.append(fmt(rows[-1]))
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
    return "\n".join(lines) + "\n"
