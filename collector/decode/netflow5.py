"""NetFlow v5: fixed 24-byte header, fixed 48-byte records, decoded as numpy views.

All v5 datagrams of a batch are validated at once; their record bytes are joined into one
contiguous buffer (one memcpy per datagram) and viewed through a big-endian structured
dtype. Nothing is created per record.

Times: a record's ``first``/``last`` are sysUpTime milliseconds. The flow's age at export
is the signed 32-bit difference ``sys_uptime - first``, which stays right across the
uptime wrap at 2**32 ms (~49.7 days): absolute start = export time - age.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

import numpy as np

from collector.batch import FlowBatch
from collector.datagrams import DatagramBatch, gather_fixed
from collector.decode.inplace import TIMES_UPTIME, V5_LAYOUT, RecordSets

HEADER_LEN = 24
RECORD_LEN = 48
MAX_RECORDS = 30  # the v5 format's own limit (Cisco); more means a corrupt header

HEADER_DTYPE = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),
        ("sys_uptime", ">u4"),
        ("unix_secs", ">u4"),
        ("unix_nsecs", ">u4"),
        ("flow_sequence", ">u4"),
        ("engine_type", "u1"),
        ("engine_id", "u1"),
        ("sampling_interval", ">u2"),
    ]
)
RECORD_DTYPE = np.dtype(
    [
        ("srcaddr", ">u4"),
        ("dstaddr", ">u4"),
        ("nexthop", ">u4"),
        ("input", ">u2"),
        ("output", ">u2"),
        ("dPkts", ">u4"),
        ("dOctets", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
        ("srcport", ">u2"),
        ("dstport", ">u2"),
        ("pad1", "u1"),
        ("tcp_flags", "u1"),
        ("prot", "u1"),
        ("tos", "u1"),
        ("src_as", ">u2"),
        ("dst_as", ">u2"),
        ("src_mask", "u1"),
        ("dst_mask", "u1"),
        ("pad2", ">u2"),
    ]
)
assert HEADER_DTYPE.itemsize == HEADER_LEN and RECORD_DTYPE.itemsize == RECORD_LEN


@dataclass(frozen=True)
class V5Records:
    """Accepted v5 datagrams: their headers, and where their records lie in the buffer.

    The records are not copied: the compiled converter reads them in place. ``records``
    (a structured big-endian view, for inspection and the oracle tests) is joined on
    first use.
    """

    headers: np.ndarray  # HEADER_DTYPE[d]
    buffer: np.ndarray  # uint8: the DatagramBatch buffer
    record_offsets: np.ndarray  # int64[d]: where each datagram's first record starts
    counts: np.ndarray  # int64[d]: records per datagram
    rows: np.ndarray  # int64[d] -> index of each accepted datagram in the input batch

    def __len__(self) -> int:
        return int(self.counts.sum())

    @functools.cached_property
    def records(self) -> np.ndarray:
        """RECORD_DTYPE[n], all records in datagram order."""
        view = memoryview(self.buffer)
        ends = self.record_offsets + RECORD_LEN * self.counts
        blob = b"".join(
            [view[s:e] for s, e in zip(self.record_offsets.tolist(), ends.tolist(), strict=True)]
        )
        return np.frombuffer(blob, dtype=RECORD_DTYPE)

    @functools.cached_property
    def datagram_of_record(self) -> np.ndarray:
        """int64[n] -> index into ``headers`` of each record."""
        return np.repeat(np.arange(len(self.rows), dtype=np.int64), self.counts)


def decode_v5(batch: DatagramBatch, rows: np.ndarray, errors: Counter) -> V5Records:
    """Validate the v5 datagrams ``batch[rows]``; bad ones are counted and skipped."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = batch.lengths[rows]
    short = lengths < HEADER_LEN
    if short.any():
        errors["v5_short_header"] += int(short.sum())
        rows, lengths = rows[~short], lengths[~short]
    offsets = batch.offsets[rows]
    headers = gather_fixed(batch.buffer, offsets, HEADER_DTYPE)
    count = headers["count"].astype(np.int64)
    bad_count = (count == 0) | (count > MAX_RECORDS)
    truncated = ~bad_count & (lengths < HEADER_LEN + RECORD_LEN * count)
    errors["v5_bad_count"] += int(bad_count.sum())
    errors["v5_truncated"] += int(truncated.sum())
    keep = ~(bad_count | truncated)
    if not keep.all():
        rows, offsets, headers, count = rows[keep], offsets[keep], headers[keep], count[keep]
    return V5Records(headers, batch.buffer, offsets + HEADER_LEN, count, rows)


def export_milliseconds(headers: np.ndarray) -> np.ndarray:
    """Export time of each datagram as unix milliseconds."""
    return (
        headers["unix_secs"].astype(np.int64) * 1000
        + headers["unix_nsecs"].astype(np.int64) // 1_000_000
    )


def sampling_rate(headers: np.ndarray) -> np.ndarray:
    """Packets each sampled packet stands for: the low 14 bits of the header field, 0 -> 1."""
    interval = (headers["sampling_interval"].astype(np.uint32)) & np.uint32(0x3FFF)
    return np.where(interval == 0, np.uint32(1), interval).astype(np.uint32)


def uptime_age(sys_uptime: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """Signed milliseconds between a sysUpTime stamp and the export's uptime (wrap-safe)."""
    diff = (sys_uptime.astype(np.uint32) - stamp.astype(np.uint32)).astype(np.uint32)
    return diff.view(np.int32).astype(np.int64)


# The columns convert_v5 writes for every record.
CONVERTED_COLUMNS = (
    "source_ipv4_address",
    "destination_ipv4_address",
    "octet_delta_count",
    "packet_delta_count",
    "flow_start_milliseconds",
    "flow_end_milliseconds",
    "ingress_interface",
    "egress_interface",
    "sampling_interval",
    "exporter_index",
)


@dataclass(frozen=True)
class V5Flows:
    """Accepted v5 records still in the receive buffer, with what each datagram's records
    need from outside it: the exporter index and the sampling rate (configured overrides
    already applied). Accounting can read them in place (:meth:`record_sets`, see
    collector/decode/inplace.py) or turn them into a FlowBatch (:meth:`to_flow_batch`)."""

    records: V5Records
    exporter_index: np.ndarray  # int32[d]
    rate: np.ndarray  # uint32[d]

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, datagram: np.ndarray, record_offset: np.ndarray) -> V5Flows:
        """Single records, each given by its datagram (index into this object's datagrams)
        and the byte offset of the record in the buffer."""
        r = self.records
        one = np.ones(len(datagram), np.int64)
        part = V5Records(r.headers[datagram], r.buffer, record_offset, one, r.rows[datagram])
        return V5Flows(part, self.exporter_index[datagram], self.rate[datagram])

    def to_flow_batch(self, notes: Counter) -> FlowBatch:
        return to_flow_batch(self.records, self.exporter_index, notes, self.rate)

    def record_sets(self) -> RecordSets:
        """These records for in-place accounting (each datagram is one set)."""
        r = self.records
        return RecordSets(
            buffer=r.buffer,
            set_starts=r.record_offsets,
            per_set=r.counts,
            record_length=RECORD_LEN,
            layout=V5_LAYOUT,
            times=TIMES_UPTIME,
            export_ms=export_milliseconds(r.headers),
            uptime=r.headers["sys_uptime"].astype(np.int64),
            rate=self.rate,
            exporter_index=self.exporter_index,
            end_before_start_note="v5_end_before_start",
            rate_unknown_note=None,
            materialize=lambda sets, offsets, notes: self.subset(sets, offsets).to_flow_batch(
                notes
            ),
        )


def to_flow_batch(
    decoded: V5Records,
    exporter_index: np.ndarray,
    notes: Counter,
    rate: np.ndarray | None = None,
) -> FlowBatch:
    """Map decoded v5 records onto the common FlowBatch columns (one compiled pass).

    ``exporter_index`` gives, per accepted datagram, the index of its exporter; ``rate``
    its sampling rate (the header's by default). Records whose end precedes their start
    are kept (their bytes count) with start := end, and noted in ``notes``.
    """
    from collector.decode._v5kernel import convert_v5

    n = len(decoded)
    out = FlowBatch.allocate(n, written=CONVERTED_COLUMNS)
    if n == 0:
        return out
    headers = decoded.headers
    inverted = convert_v5(
        decoded.buffer,
        decoded.record_offsets,
        decoded.counts,
        export_milliseconds(headers),
        headers["sys_uptime"].astype(np.int64),
        sampling_rate(headers) if rate is None else np.asarray(rate, np.uint32),
        np.asarray(exporter_index, dtype=np.int32),
        out.source_ipv4_address,
        out.destination_ipv4_address,
        out.octet_delta_count,
        out.packet_delta_count,
        out.flow_start_milliseconds,
        out.flow_end_milliseconds,
        out.ingress_interface,
        out.egress_interface,
        out.sampling_interval,
        out.exporter_index,
    )
    if inverted:
        notes["v5_end_before_start"] += int(inverted)
    return out
