"""`egress status` as text."""

from __future__ import annotations

from accounting.status import CollectorStatus
from reports.render.table import human_bytes


def _ago(status: CollectorStatus, moment) -> str:
    if moment is None:
        return "never"
    seconds = (status.now - moment).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _dropped_lines(s: CollectorStatus) -> list[str]:
    """Datagrams the collector read and could not account, by reason; undeclared
    exporters by address (the busiest first)."""
    reasons = {k: v for k, v in s.dropped_24h.items() if not k.startswith("unknown_exporter:")}
    lines = [
        f"datagrams dropped in 24 h: {sum(reasons.values()):,}"
        + (" (" + ", ".join(f"{k} {v:,}" for k, v in reasons.items()) + ")" if reasons else "")
    ]
    sources = [
        (k.partition(":")[2], v)
        for k, v in s.dropped_24h.items()
        if k.startswith("unknown_exporter:")
    ]
    if sources:
        shown = ", ".join(f"{a} {v:,}" for a, v in sources[:5])
        more = f" and {len(sources) - 5} more" if len(sources) > 5 else ""
        lines.append(f"  from undeclared exporters: {shown}{more}")
    return lines


def render_status(s: CollectorStatus) -> str:
    lines = [
        f"database   {s.database} ({human_bytes(s.database_bytes)})",
        f"journal    {human_bytes(s.journal_bytes)} not yet committed",
        f"last flush {s.last_flush:%Y-%m-%d %H:%M:%S %Z} ({_ago(s, s.last_flush)}); {s.flushes_24h} in 24 h"
        if s.last_flush
        else "last flush never (is `egress collect` running?)",
        f"flows committed in the last hour: {s.flows_last_hour:,}",
        f"kernel receive-buffer drops in 24 h: {s.kernel_drops_24h:,}",
        *_dropped_lines(s),
        "",
        f"{'exporter':<40} {'last seen':>14} {'datagrams/h':>12} {'loss 24h':>9}",
    ]
    for e in s.exporters:
        name = (
            e.address
            if not e.declared_name or e.declared_name == e.address
            else f"{e.declared_name} ({e.address})"
        )
        total = e.received_24h + e.lost_24h
        loss = f"{100 * e.lost_24h / total:.2f}%" if total else "-"
        lines.append(
            f"{name:<40} {_ago(s, e.last_seen) if e.last_seen else 'never':>14} "
            f"{e.datagrams_last_hour:>12,} {loss:>9}"
        )
    if not s.exporters:
        lines.append("(no exporter seen and none declared)")
    return "\n".join(lines) + "\n"
