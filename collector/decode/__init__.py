"""Decoding export datagrams into FlowBatches, by protocol version.

:class:`Decoder` is the one entry point: it routes each datagram of a batch to its
protocol by the 16-bit version field (5: NetFlow v5, 9: NetFlow v9, 10: IPFIX), keeps
per-exporter state across batches (templates, data waiting for its template, sampling
rates, sequence numbers), and returns a :class:`DecodeResult` whose counters say what was
dropped and why. It never raises on bad input.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from collector.batch import FlowBatch
from collector.datagrams import DatagramBatch, unique_addresses
from collector.decode import ipfix, netflow5, netflow9
from collector.decode.flowsets import Dialect, ExporterState, decode_messages
from collector.decode.inplace import RecordSets
from collector.decode.sampling import SamplingPolicy, SamplingState
from collector.decode.sequence import SequenceRow, SequenceTracker
from collector.decode.templates import Limits, PendingBuffer, PendingSet, TemplateStore

VERSION_V5 = 5
VERSION_V9 = 9
VERSION_IPFIX = 10
DIALECTS: dict[int, Dialect] = {VERSION_V9: netflow9.DIALECT, VERSION_IPFIX: ipfix.DIALECT}


@dataclass
class DecodeResult:
    """Flows decoded from one DatagramBatch, and what could not be decoded.

    ``dropped`` counts datagrams, sets or records discarded, by reason (the reason says
    which); ``notes`` counts things kept but worth knowing (records adjusted, templates
    seen, sets waiting for their template, records decoded late...).
    ``exporters`` lists the distinct exporter addresses; ``flows.exporter_index`` points
    into it (it may hold exporters of earlier batches whose buffered data decoded now).
    ``sequence`` holds export sequence counters per (exporter, version, domain, bin).
    """

    flows: FlowBatch
    exporters: np.ndarray  # uint64[k, 2]
    datagrams: int = 0
    datagrams_by_version: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    first_export_ms: int | None = None
    last_export_ms: int | None = None
    sequence: list[SequenceRow] = field(default_factory=list)
    pending_sets: int = 0  # data sets still waiting for their template after this batch
    in_place: list[RecordSets] = field(default_factory=list)  # decode(in_place=True)

    @property
    def flow_count(self) -> int:
        return len(self.flows) + sum(len(sets) for sets in self.in_place)


class Decoder:
    """Stateful multi-protocol decoder (state matters for v9/IPFIX templates).

    ``sampling`` gives configured per-exporter rates (override / default, see
    :mod:`collector.decode.sampling`); ``limits`` bounds what exporters can make it hold;
    ``bin_ms`` is the bin width of the sequence (loss) counters.
    """

    def __init__(
        self,
        *,
        sampling: SamplingPolicy | None = None,
        limits: Limits | None = None,
        bin_ms: int = 300_000,
    ) -> None:
        limits = limits or Limits()
        self.state = ExporterState(
            limits=limits,
            templates=TemplateStore(limits),
            pending=PendingBuffer(limits),
            sampling=SamplingState(sampling, limits.samplers_per_exporter),
            sequence=SequenceTracker(bin_ms),
        )

    # -- persisted state ---------------------------------------------------------------
    def snapshot(self) -> dict:
        """Templates and sampling state as JSON-serialisable data (store it; restore it)."""
        return {
            "templates": self.state.templates.snapshot(),
            "sampling": self.state.sampling.snapshot(),
        }

    def restore(self, snapshot: dict) -> None:
        self.state.templates.restore(snapshot.get("templates", []))
        self.state.sampling.restore(snapshot.get("sampling", {}))

    def close(self) -> Counter:
        """Drop what still waits for a template; returns the counts (e.g. at end of file)."""
        left = self.state.pending.drain()
        return Counter({"pending_never_decoded_sets": len(left)}) if left else Counter()

    # -- decoding -----------------------------------------------------------------------
    def decode(self, batch: DatagramBatch, *, in_place: bool = False) -> DecodeResult:
        """Decode one batch. With ``in_place`` the records of the layouts
        collector/decode/inplace.py describes are not converted: they come back in
        ``result.in_place``, still in ``batch``'s buffer (read them before the buffer is
        reused)."""
        dropped: Counter = Counter()
        notes: Counter = Counter()
        n = len(batch)
        if n == 0:
            return DecodeResult(FlowBatch.empty(), np.zeros((0, 2), np.uint64))
        exporters, exporter_of_datagram = unique_addresses(batch.source_address)
        pairs = [(int(a), int(b)) for a, b in exporters.tolist()]
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
        sequence: list[SequenceRow] = []
        left_in_place: list[RecordSets] = []
        v5_rows = np.flatnonzero(version == VERSION_V5)
        if len(v5_rows):
            v5 = netflow5.decode_v5(batch, v5_rows, dropped)
            v5_exporters = exporter_of_datagram[v5.rows].astype(np.int32)
            v5_flows = netflow5.V5Flows(v5, v5_exporters, self._v5_rates(v5, v5_exporters, pairs))
            if in_place:
                left_in_place.append(v5_flows.record_sets())
            else:
                parts.append(v5_flows.to_flow_batch(notes))
            export_ms.append(netflow5.export_milliseconds(v5.headers))
            h = v5.headers
            sequence += self.state.sequence.observe(
                pairs,
                VERSION_V5,
                v5_exporters,
                (h["engine_type"].astype(np.int64) << 8) | h["engine_id"],
                h["flow_sequence"].astype(np.int64),
                h["count"].astype(np.int64),
                export_ms[-1],
            )
        if len(batch.arrival_ns):
            self.state.pending.expire(int(batch.arrival_ns.max()), dropped)
        for v, dialect in DIALECTS.items():
            rows = np.flatnonzero(version == v)
            if not len(rows):
                continue
            out = decode_messages(
                dialect,
                batch,
                rows,
                exporter_of_datagram,
                pairs,
                self.state,
                dropped,
                notes,
                in_place=in_place,
            )
            parts += out.parts
            left_in_place += out.in_place
            export_ms.append(out.export_ms)
            sequence += out.sequence
            waiting = out.defined & self.state.pending.keys()
            if waiting:
                parts += self._replay(dialect, waiting, pairs, dropped, notes)
        unknown = ~np.isin(version, [VERSION_V5, *DIALECTS]) & ~too_short
        if unknown.any():
            dropped["unknown_version"] += int(unknown.sum())
        times = np.concatenate(export_ms) if export_ms else np.zeros(0, np.int64)
        exporters_out = np.array(pairs, dtype=np.uint64).reshape(-1, 2)
        return DecodeResult(
            flows=FlowBatch.concat(parts),
            exporters=exporters_out,
            datagrams=n,
            datagrams_by_version=by_version,
            dropped=+dropped,
            notes=+notes,
            first_export_ms=int(times.min()) if len(times) else None,
            last_export_ms=int(times.max()) if len(times) else None,
            sequence=sequence,
            pending_sets=len(self.state.pending),
            in_place=left_in_place,
        )

    def _v5_rates(
        self, v5: netflow5.V5Records, exporter: np.ndarray, pairs: list[tuple[int, int]]
    ) -> np.ndarray:
        """Each datagram's sampling rate: the header's, unless the configuration overrides
        it for that exporter (configured overrides apply to v5 too)."""
        rate = netflow5.sampling_rate(v5.headers)
        for i, pair in enumerate(pairs):
            if pair in self.state.sampling.overrides:
                rate[exporter == i] = self.state.sampling.overrides[pair]
        return rate

    def _replay(
        self,
        dialect: Dialect,
        keys: set,
        pairs: list[tuple[int, int]],
        dropped: Counter,
        notes: Counter,
    ) -> list[FlowBatch]:
        """Decode the buffered data sets whose template has just arrived."""
        items: list[PendingSet] = []
        for key in sorted(keys):
            items += self.state.pending.take(key)
        if not items:
            return []
        payloads = []
        for item in items:
            header = bytearray(item.header)
            if dialect.version == VERSION_IPFIX:
                total = len(header) + len(item.data_set)
                header[2:4] = total.to_bytes(2, "big")
            payloads.append(bytes(header) + item.data_set)
        index = {p: i for i, p in enumerate(pairs)}
        exporter_rows = []
        for item in items:
            if item.exporter not in index:
                index[item.exporter] = len(pairs)
                pairs.append(item.exporter)
            exporter_rows.append(index[item.exporter])
        lengths = np.array([len(p) for p in payloads], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        replay = DatagramBatch(
            np.frombuffer(b"".join(payloads), np.uint8),
            offsets,
            lengths,
            np.array([item.exporter for item in items], np.uint64).reshape(-1, 2),
            np.array([item.source_port for item in items], np.uint16),
            np.array([item.arrival_ns for item in items], np.int64),
        )
        out = decode_messages(
            dialect,
            replay,
            np.arange(len(items)),
            np.array(exporter_rows, np.int64),
            pairs,
            self.state,
            dropped,
            notes,
            replay=True,
        )
        return out.parts
