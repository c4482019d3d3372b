"""Offline ingestion: a capture file in, its usage committed to the store, once.

read (collector.pcap) -> decode (collector.decode) -> attribute + bin (accounting) ->
one transaction (accounting.store). A file is identified by the SHA-256 of its bytes,
computed while it is read; a file already ingested is reported and nothing is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from accounting.attribution import attribute
from accounting.config import Config
from accounting.exporters import ExporterPolicy, UplinkTable
from accounting.members import MemberTable, compile_members
from accounting.store import SourceRecord, Store, usage_frame
from accounting.usage import UsageRows
from collector.batch import FlowBatch
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
    policy = ExporterPolicy(config.exporters, config.collector.allow_unknown_exporters)
    clock = _StageClock()
    worker = _AttributeWorker(table, bin_ms, clock)
    batches = read_datagrams(path, stats=stats, hasher=hasher)
    try:
        while True:
            with clock("read"):
                batch = next(batches, None)
            if batch is None:
                break
            with clock("decode"):
                batch = policy.filter_datagrams(batch, summary.unknown_exporters)
                result = decoder.decode(batch)
                flows = policy.apply_sampling(result.flows, result.exporters)
            summary.datagrams += result.datagrams
            summary.datagrams_by_version.update(result.datagrams_by_version)
            summary.dropped.update(result.dropped)
            summary.notes.update(result.notes)
            if len(flows):
                summary.flows += len(flows)
                worker.submit(flows, policy.uplinks(result.exporters))
            if progress:
                progress(stats.bytes_read)
    finally:
        worker.close()
    parts, worker_notes, first, last = worker.results()
    if summary.unknown_exporters:
        summary.dropped["unknown_exporter"] += sum(summary.unknown_exporters.values())
    summary.frames = stats.frames
    summary.datagrams = stats.udp_datagrams
    summary.skipped = +stats.skipped
    summary.dropped = +summary.dropped
    summary.notes = +(summary.notes + worker_notes)
    summary.first_flow_ms, summary.last_flow_ms = first, last
    with clock("combine"):
        usage = UsageRows.combine(parts)
    summary.usage_rows = len(usage)
    summary.bytes_total = int(np.sum(usage.bytes)) if len(usage) else 0
    with clock("store"):
        summary.sha256 = hasher.hexdigest()
        _commit(store, summary, usage, table)
    summary.stage_seconds = clock.seconds
    summary.seconds = time.perf_counter() - started
    return summary


def _commit(store: Store, summary: IngestSummary, usage: UsageRows, table: MemberTable) -> None:
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
        usage_frame(usage, table),
    )


class _AttributeWorker:
    """Attributes decoded batches on a second thread while the caller reads and decodes the
    next ones: the numba kernels release the GIL, so the two stages overlap on two cores.
    The queue is short, which bounds the memory held by batches in flight.
    """

    def __init__(self, table: MemberTable, bin_ms: int, clock: _StageClock) -> None:
        self._table = table
        self._bin_ms = bin_ms
        self._clock = clock
        self._queue: queue.Queue[tuple[FlowBatch, UplinkTable] | None] = queue.Queue(maxsize=3)
        self._parts: list[UsageRows] = []
        self._notes: Counter = Counter()
        self._first: int | None = None
        self._last: int | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="egress-attribute", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            flows, uplinks = item
            if self._error is not None:
                continue  # drain after a failure; the caller re-raises it
            try:
                with self._clock("attribute"):
                    lo = int(flows.flow_start_milliseconds.min())
                    hi = int(flows.flow_end_milliseconds.max())
                    self._first = lo if self._first is None else min(self._first, lo)
                    self._last = hi if self._last is None else max(self._last, hi)
                    self._parts.append(
                        attribute(
                            flows,
                            self._table,
                            bin_ms=self._bin_ms,
                            notes=self._notes,
                            uplinks=uplinks,
                        )
                    )
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc

    def submit(self, flows: FlowBatch, uplinks: UplinkTable) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((flows, uplinks))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def results(self) -> tuple[list[UsageRows], Counter, int | None, int | None]:
        if self._error is not None:
            raise self._error
        return self._parts, self._notes, self._first, self._last


class _StageClock:
    """Accumulates wall time per named stage (``with clock("decode"): ...``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - begin
