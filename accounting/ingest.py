"""Offline ingestion: a capture file in, its usage committed to the store, once.

read (collector.pcap) -> decode (collector.decode) -> attribute + bin (accounting) ->
one transaction (accounting.store). A file is identified by the SHA-256 of its bytes,
computed while it is read; a file already ingested is reported and nothing is written.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from accounting.config import Config
from accounting.members import MemberTable, compile_registry
from accounting.pipeline import Harvest, Pipeline, StageClock
from accounting.registry_history import record_registry
from accounting.store import SourceRecord, Store, counters_frame, usage_frame
from collector.ipfixfile import is_ipfix_file, read_ipfix_file
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
    unknown_exporters: Counter = field(default_factory=Counter)  # datagrams by source address
    first_flow_ms: int | None = None
    last_flow_ms: int | None = None
    usage_rows: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    duplicate_of: tuple[int, str] | None = None  # (source id, name) when already ingested
    source_id: int | None = None
    # Seconds per stage: read (capture walk + frame parsing), decode, attribute (scale,
    # classify, bin: on a second thread, overlapping read and decode), combine (sum the
    # batches' usage rows), store (hash wait + transaction).
    stage_seconds: dict[str, float] = field(default_factory=dict)


def ingest_file(
    path: Path | str,
    config: Config,
    store: Store,
    *,
    table: MemberTable | None = None,
    progress: ProgressCallback | None = None,
    exporter: str | None = None,
) -> IngestSummary:
    """Ingest one capture into ``store`` (atomically; a duplicate changes nothing).

    A pcap/pcapng file names each datagram's exporter by its source address. An IPFIX
    file (RFC 5655) holds bare messages: ``exporter`` says which router wrote them
    (default 0.0.0.0, which the allow-list must then accept).
    """
    path = Path(path)
    started = time.perf_counter()
    # What is alive now (modules, numba types, the configuration) is never garbage: frozen,
    # the cyclic collector stops walking it at every collection (~4 % of an ingest).
    gc.freeze()
    record_registry(store, config.registry, config.billing.timezone)
    table = table or compile_registry(config.registry, config.billing.timezone)
    summary = IngestSummary(str(path), size_bytes=path.stat().st_size)
    hasher = hashlib.sha256()
    stats = CaptureStats()
    clock = StageClock()
    pipeline = Pipeline(config, table, clock=clock)
    if is_ipfix_file(path):
        batches = read_ipfix_file(path, exporter=exporter or "0.0.0.0", hasher=hasher)
    else:
        batches = read_datagrams(path, stats=stats, hasher=hasher)
    try:
        while True:
            with clock("read"):
                batch = next(batches, None)
            if batch is None:
                break
            if not stats.bytes_read:  # an IPFIX file: count its messages as frames
                stats.frames += len(batch)
                stats.udp_datagrams += len(batch)
            pipeline.feed(batch)
            if progress and stats.bytes_read:
                progress(stats.bytes_read)
        if progress:
            progress(summary.size_bytes)
        pipeline.finish_input()
        harvest = pipeline.drain()
    finally:
        pipeline.close()
    summary.frames = stats.frames
    summary.datagrams = stats.udp_datagrams
    summary.datagrams_by_version = harvest.datagrams_by_version
    summary.flows = harvest.flows
    summary.dropped = harvest.dropped
    summary.notes = harvest.notes
    summary.skipped = +stats.skipped
    summary.unknown_exporters = harvest.unknown_exporters
    summary.first_flow_ms, summary.last_flow_ms = harvest.first_flow_ms, harvest.last_flow_ms
    usage = harvest.usage
    summary.usage_rows = len(usage)
    summary.bytes_total = int(np.sum(usage.bytes)) if len(usage) else 0
    with clock("store"):
        summary.sha256 = hasher.hexdigest()
        _commit(store, summary, harvest, table)
    summary.stage_seconds = clock.seconds
    summary.seconds = time.perf_counter() - started
    return summary


def _commit(store: Store, summary: IngestSummary, harvest: Harvest, table: MemberTable) -> None:
    """Record the source and its usage, unless a file with the same hash is already in."""
    existing = store.find_source(summary.sha256)
    if existing is not None:
        summary.duplicate_of = (existing[0], existing[1])
        return
    summary.source_id = store.commit_source(
        SourceRecord(
            kind="capture",
            name=summary.path,
            sha256=summary.sha256,
            size_bytes=summary.size_bytes,
            frames=summary.frames,
            datagrams=summary.datagrams,
            flows=summary.flows,
            first_flow_ms=summary.first_flow_ms,
            last_flow_ms=summary.last_flow_ms,
            dropped={
                **dict(summary.dropped),
                **{f"unknown_exporter:{a}": c for a, c in summary.unknown_exporters.items()},
            },
            notes=dict(summary.notes),
            skipped=dict(summary.skipped),
        ),
        usage_frame(harvest.usage, table),
        counters_frame(harvest.counters),
        seen=harvest.seen,
    )
