"""Append-only journal of received datagram batches, for recovery after a crash.

Every batch the collector reads from its sockets is appended here before it is decoded
(one ``writev`` per batch: a killed process leaves whole records, or a torn last one that
replay detects and skips). At each flush the collector rotates to a new segment and
commits, in the same database transaction as the usage, the number of the first segment
not yet accounted; segments before it are then deleted. After ``kill -9`` the collector
replays the segments from that number: nothing it had read is lost, nothing is counted
twice.

Segment files ``NNNNNNNNNNNN.seg`` hold records:
  header  "EGJ1" | n:u32 | payload bytes:u64
  index   lengths u32[n] | sources u64[n,2] | ports u16[n] | arrival ns i64[n]
  payload the n datagrams back to back
  trailer "EGJ$" | record length:u64
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from collector.datagrams import DatagramBatch

MAGIC = b"EGJ1"
TRAILER = b"EGJ$"
HEADER = struct.Struct("<4sIQ")
TRAILER_STRUCT = struct.Struct("<4sQ")
INDEX_BYTES_PER_DATAGRAM = 4 + 16 + 2 + 8


def _segment_name(number: int) -> str:
    return f"{number:012d}.seg"


class Journal:
    """Segments in ``directory``; one is open for appending at a time."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self.segments()
        self.current = (existing[-1] + 1) if existing else 1
        self._fd = self._open(self.current)
        self.bytes_written = 0
        self.appended_since_rotate = 0
        self.torn_records = 0

    def segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())

    def _open(self, number: int) -> int:
        path = self.directory / _segment_name(number)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, batch: DatagramBatch) -> None:
        """Write one batch as one record (a single writev)."""
        n = len(batch)
        if n == 0:
            return
        payload = _contiguous_payload(batch)
        index = b"".join(
            [
                batch.lengths.astype("<u4").tobytes(),
                batch.source_address.astype("<u8").tobytes(),
                batch.source_port.astype("<u2").tobytes(),
                batch.arrival_ns.astype("<i8").tobytes(),
            ]
        )
        size = HEADER.size + len(index) + len(payload) + TRAILER_STRUCT.size
        parts = [
            HEADER.pack(MAGIC, n, len(payload)),
            index,
            payload,
            TRAILER_STRUCT.pack(TRAILER, size),
        ]
        written = os.writev(self._fd, parts)
        if written != size:  # a full disk: say so loudly rather than lose data silently
            raise OSError(f"journal {self.directory}: short write ({written} of {size} bytes)")
        self.bytes_written += size
        self.appended_since_rotate += 1

    def rotate(self) -> int:
        """Start a new segment; returns its number (everything before it is closed)."""
        os.close(self._fd)
        self.appended_since_rotate = 0
        self.current += 1
        self._fd = self._open(self.current)
        return self.current

    def delete_before(self, number: int) -> int:
        """Remove the segments numbered below ``number`` (they are committed)."""
        removed = 0
        for seg in self.segments():
            if seg < number:
                (self.directory / _segment_name(seg)).unlink(missing_ok=True)
                removed += 1
        return removed

    def size_bytes(self) -> int:
        return sum((self.directory / _segment_name(s)).stat().st_size for s in self.segments())

    def replay(
        self, first_segment: int, last_segment: int | None = None
    ) -> Iterator[DatagramBatch]:
        """The recorded batches of segments ``first_segment`` .. ``last_segment`` (inclusive;
        default: all but the one open now), in order. A torn last record is skipped and counted."""
        last = self.current - 1 if last_segment is None else last_segment
        for seg in self.segments():
            if first_segment <= seg <= last:
                yield from self._read_segment(self.directory / _segment_name(seg))

    def _read_segment(self, path: Path) -> Iterator[DatagramBatch]:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            if pos + HEADER.size > len(data):
                self.torn_records += 1
                return
            magic, n, payload_len = HEADER.unpack_from(data, pos)
            index_len = n * INDEX_BYTES_PER_DATAGRAM
            size = HEADER.size + index_len + payload_len + TRAILER_STRUCT.size
            if magic != MAGIC or pos + size > len(data):
                self.torn_records += 1
                return
            trailer, recorded = TRAILER_STRUCT.unpack_from(data, pos + size - TRAILER_STRUCT.size)
            if trailer != TRAILER or recorded != size:
                self.torn_records += 1
                return
            at = pos + HEADER.size
            lengths = np.frombuffer(data, "<u4", n, at).astype(np.int64)
            at += 4 * n
            sources = np.frombuffer(data, "<u8", 2 * n, at).reshape(n, 2).astype(np.uint64)
            at += 16 * n
            ports = np.frombuffer(data, "<u2", n, at).astype(np.uint16)
            at += 2 * n
            times = np.frombuffer(data, "<i8", n, at).astype(np.int64)
            at += 8 * n
            buffer = np.frombuffer(data, np.uint8, payload_len, at)
            offsets = np.zeros(n, np.int64)
            if n > 1:
                offsets[1:] = np.cumsum(lengths[:-1])
            yield DatagramBatch(buffer, offsets, lengths, sources, ports, times)
            pos += size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _contiguous_payload(batch: DatagramBatch) -> memoryview | bytes:
    """The payloads back to back: a view of the buffer when they already are (sockets)."""
    start = int(batch.offsets[0])
    expected = start + np.concatenate([[0], np.cumsum(batch.lengths[:-1])])
    end = start + int(batch.lengths.sum())
    if np.array_equal(batch.offsets, expected):
        return memoryview(batch.buffer)[start:end]
    view = memoryview(batch.buffer)
    return b"".join(
        view[int(o) : int(o) + int(n)] for o, n in zip(batch.offsets, batch.lengths, strict=True)
    )
