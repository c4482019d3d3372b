"""Offline ingestion: a capture file in, its usage committed to the store, once.

read (collector.pcap) -> decode (collector.decode) -> attribute + bin (accounting) ->
one transaction (accounting.store). A file is identified by the SHA-256 of its bytes,
computed while it is read; a file already ingested is reported and nothing is written.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from accounting.attribution import attribute
from accounting.config import Config
from accounting.members import MemberTable, compile_members
from accounting.store import SourceRecord, Store, usage_frame
from accounting.usage import UsageRows
from collector.decode import Decoder
from collector.pcap import CaptureStats, read_datagrams

ProgressCallback = Callable[[int], None]  # bytes of the file read so far


@dataclass
class IngestSummary:
    """What one file gave (printed by ``egress ingest``)."""

    path: str
    sha256: str = ""
    size_bytes: int = 0
    frames: int = 0
    datagrams: int = 0
    datagrams_by_version: Counter = field(default_factory=Counter)
    flows: int = 0
    dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    first_flow_ms: int | None = None
    last_flow_ms: int | None = None
    usage_rows: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    duplicate_of: tuple[int, str] | None = None  # (source id, name) when already ingested
    source_id: int | None = None


def ingest_file(
    path: Path | str,
    config: Config,
    store: Store,
    *,
    table: MemberTable | None = None,
    progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Ingest one capture into ``store`` (atomically; a duplicate changes nothing)."""
    path = Path(path)
    started = time.perf_counter()
    table = table or compile_members(config.members)
    bin_ms = config.billing.bin_seconds * 1000
    summary = IngestSummary(str(path), size_bytes=path.stat().st_size)
    hasher = hashlib.sha256()
    stats = CaptureStats()
    decoder = Decoder()
    parts: list[UsageRows] = []
    first = last = None
    for batch in read_datagrams(path, stats=stats, hasher=hasher):
        result = decoder.decode(batch)
        summary.datagrams += result.datagrams
        summary.datagrams_by_version.update(result.datagrams_by_version)
        summary.dropped.update(result.dropped)
        summary.notes.update(result.notes)
        flows = result.flows
        if len(flows):
            summary.flows += len(flows)
            lo = int(flows.flow_start_milliseconds.min())
            hi = int(flows.flow_end_milliseconds.max())
            first = lo if first is None else min(first, lo)
            last = hi if last is None else max(last, hi)
            parts.append(attribute(flows, table, bin_ms=bin_ms, notes=summary.notes))
        if progress:
            progress(stats.bytes_read)
    summary.frames = stats.frames
    summary.skipped = +stats.skipped
    summary.dropped = +summary.dropped
    summary.notes = +summary.notes
    summary.first_flow_ms, summary.last_flow_ms = first, last
    summary.sha256 = hasher.hexdigest()
    usage = UsageRows.combine(parts)
    summary.usage_rows = len(usage)
    summary.bytes_total = int(np.sum(usage.bytes)) if len(usage) else 0

    existing = store.find_source(summary.sha256)
    if existing is not None:
        summary.duplicate_of = (existing[0], existing[1])
    else:
        summary.source_id = store.commit_source(
            SourceRecord(
                kind="capture",
                name=str(path),
                sha256=summary.sha256,
                size_bytes=summary.size_bytes,
                frames=summary.frames,
                datagrams=summary.datagrams,
                flows=summary.flows,
                first_flow_ms=first,
                last_flow_ms=last,
                dropped=dict(summary.dropped),
                notes=dict(summary.notes),
                skipped=dict(summary.skipped),
            ),
            usage_frame(usage, table),
        )
    summary.seconds = time.perf_counter() - started
    return summary
