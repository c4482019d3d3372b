"""Decoding export datagrams into FlowBatches, by protocol version.

:class:`Decoder` is the one entry point: it routes each datagram of a batch to its
protocol by the 16-bit version field, keeps per-exporter state across batches, and
returns a :class:`DecodeResult` whose counters say what was dropped and why. It never
raises on bad input.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from collector.batch import FlowBatch
from collector.datagrams import DatagramBatch
from collector.decode import netflow5

VERSION_V5 = 5
VERSION_V9 = 9
VERSION_IPFIX = 10


@dataclass
class DecodeResult:
    """Flows decoded from one DatagramBatch, and what could not be decoded.

    ``dropped`` counts datagrams (or records, when the reason says so) discarded, by
    reason; ``notes`` counts records kept but adjusted (e.g. an end time before its start).
    ``exporters`` lists the distinct exporter addresses; ``flows.exporter_index`` points
    into it.
    """

    flows: FlowBatch
    exporters: np.ndarray  # uint64[k, 2]
    datagrams: int = 0
    datagrams_by_version: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    first_export_ms: int | None = None
    last_export_ms: int | None = None


class Decoder:
    """Stateful multi-protocol decoder (state matters for v9/IPFIX templates)."""

    def decode(self, batch: DatagramBatch) -> DecodeResult:
        dropped: Counter = Counter()
        notes: Counter = Counter()
        n = len(batch)
        if n == 0:
            return DecodeResult(FlowBatch.empty(), np.zeros((0, 2), np.uint64))
        exporters, exporter_of_datagram = np.unique(
            batch.source_address, axis=0, return_inverse=True
        )
        exporter_of_datagram = exporter_of_datagram.reshape(-1)
        too_short = batch.lengths < 2
        dropped["short_datagram"] += int(too_short.sum())
        version = np.full(n, -1, dtype=np.int64)
        long_enough = np.flatnonzero(~too_short)
        at = batch.offsets[long_enough]
        version[long_enough] = (batch.buffer[at].astype(np.int64) << 8) | batch.buffer[at + 1]
        by_version = Counter(
            {int(v): int(c) for v, c in zip(*np.unique(version, return_counts=True), strict=True)}
        )
        by_version.pop(-1, None)

        parts: list[FlowBatch] = []
        export_ms: list[np.ndarray] = []
        v5_rows = np.flatnonzero(version == VERSION_V5)
        if len(v5_rows):
            v5 = netflow5.decode_v5(batch, v5_rows, dropped)
            parts.append(netflow5.to_flow_batch(v5, exporter_of_datagram[v5.rows], notes))
            export_ms.append(netflow5.export_milliseconds(v5.headers))
        known = {VERSION_V5}
        unknown = ~np.isin(version, list(known)) & ~too_short
        if unknown.any():
            for v, c in zip(*np.unique(version[unknown], return_counts=True), strict=True):
                label = {VERSION_V9: "v9", VERSION_IPFIX: "ipfix"}.get(int(v))
                reason = f"{label}_not_supported" if label else "unknown_version"
                dropped[reason] += int(c)
        times = np.concatenate(export_ms) if export_ms else np.zeros(0, np.int64)
        return DecodeResult(
            flows=FlowBatch.concat(parts),
            exporters=exporters.astype(np.uint64),
            datagrams=n,
            datagrams_by_version=by_version,
            dropped=+dropped,
            notes=+notes,
            first_export_ms=int(times.min()) if len(times) else None,
            last_export_ms=int(times.max()) if len(times) else None,
        )
