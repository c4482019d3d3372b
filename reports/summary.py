"""One-paragraph summaries of what a command did (ingest)."""

from __future__ import annotations

from accounting.bins import utc_from_ms
from accounting.ingest import IngestSummary


def _counts(counter) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(counter.items()))


def format_ingest_summary(s: IngestSummary) -> str:
    versions = ", ".join(f"v{v} {c:,}" for v, c in sorted(s.datagrams_by_version.items()))
    lines = [
        f"{s.path}: {s.frames:,} frames, {s.datagrams:,} UDP datagrams ({versions or 'none'}), {s.flows:,} flows"
    ]
    if s.first_flow_ms is not None and s.last_flow_ms is not None:
        lines.append(
            f"  flows from {utc_from_ms(s.first_flow_ms):%Y-%m-%d %H:%M:%S} to "
            f"{utc_from_ms(s.last_flow_ms):%Y-%m-%d %H:%M:%S} UTC"
        )
    if s.dropped:
        lines.append(f"  dropped (datagrams): {_counts(s.dropped)}")
    if s.unknown_exporters:
        lines.append(
            f"  from exporters not declared under [[exporters]] (dropped): {_counts(s.unknown_exporters)};"
            " declare them, or set allow_unknown_exporters = true under [collector]"
        )
    if s.notes:
        lines.append(f"  adjusted records: {_counts(s.notes)}")
    if s.skipped:
        lines.append(f"  frames that are not export datagrams: {_counts(s.skipped)}")
    rate = s.flows / s.seconds if s.seconds > 0 else 0.0
    if s.duplicate_of is not None:
        source_id, name = s.duplicate_of
        lines.append(f"  already ingested as source #{source_id} ({name}): nothing written")
    else:
        lines.append(
            f"  committed as source #{s.source_id}: {s.usage_rows:,} usage rows, "
            f"{s.bytes_total:,} bytes, in {s.seconds:.2f} s ({rate:,.0f} flows/s)"
        )
    return "\n".join(lines)
