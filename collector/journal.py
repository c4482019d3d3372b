"""Append-only journal of received datagram batches, for recovery after a crash.

Every batch the collector reads from its sockets is appended here before it is decoded
(one ``pwritev`` per batch, or, on tmpfs, stores into the segment's memory map; a killed
process leaves whole records, or a torn last one that replay detects and skips). At each
flush the collector rotates to a new segment and commits, in the same database
transaction as the usage, the number of the first segment not yet accounted; segments
before it are then retired. After ``kill -9`` the collector replays the segments from
that number: nothing it had read is lost, nothing is counted twice.

Retired segments are recycled, as database write-ahead logs do: up to ``SPARES`` of them
are renamed ``NNNNNNNNNNNN.spare`` and the next segments are written over them from the
start. Writing over blocks that are allocated and pages that are cached costs a copy;
appending to a fresh file costs block allocation and page set-up, which measured ~2.9 µs
per 1,464-byte datagram on ext4 here against ~0.15 µs for the overwrite; retiring keeps
the largest files, and :meth:`Journal.grow_spare` lets a background thread
(collector/spare_reserve.py) enlarge them before traffic needs it. A recycled file
still holds older records after what was written since: each record carries its segment
number in its header and trailer, and replay stops at the first record of another
segment. Segment numbers never repeat while a spare exists (a new journal numbers after
the highest segment or spare), so a stale record can never pass for a current one. Each
write also puts an end marker after its record (the next write covers it), so replay can
tell the clean end of a segment from a write cut short by the crash (counted as torn).

On tmpfs the journal's pages are memory either way, and the journal is written through
memory maps of the recycled files. The receiver has the kernel copy each datagram from
the socket straight into the open segment's map, one receive slot per datagram
(:meth:`Journal.slot_area`), and a slot record is written around them: the kernel's
copy is the only one. Where that cannot be (a datagram longer than its slot), it packs
the batch and the record is stored into the map (:meth:`Journal.payload_area`). The
reserve's thread maps each spare and populates its page table entries
(:meth:`Journal.map_spares`); a segment without a populated map, and a record past the
map's end, are written with ``pwritev``. On a disk file system the maps are not used:
written-back pages fault again at the next write.

Segment files ``NNNNNNNNNNNN.seg`` hold records:
  header  "EGJ2" | n:u32 | payload bytes:u64 | segment:u64
  index   lengths u32[n] | sources u64[n,2] | ports u16[n] | arrival ns i64[n]
  payload the n datagrams back to back
  trailer "EGJ$" | record length:u64 | segment:u64
or slot records, datagrams left in the receive slots they came in:
  header  "EGJ3" | n:u32 | slot bytes:u64 | segment:u64
  slots   the datagrams, each at its offset (a slot's unused end is not read)
  index   offsets u32[n] | lengths u32[n] | sources u64[n,2] | ports u16[n] | arrival ns i64[n]
  trailer "EGJ$" | record length:u64 | segment:u64
and, after the last record, the end marker "EGJ." | segment:u64.
Records of format 1 (``EGJ1``, no segment number, written before recycling existed) are
still read from files that hold nothing else; such files are never recycled.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from collector.datagrams import DatagramBatch
from collector.filemap import FileMap, libc

log = logging.getLogger("egress.collect")

MAGIC = b"EGJ2"
MAGIC_SLOTS = b"EGJ3"  # a record whose datagrams stay in the receive slots they came in
MAGIC_V1 = b"EGJ1"
TRAILER = b"EGJ$"
END = b"EGJ."
HEADER = struct.Struct("<4sIQQ")
TRAILER_STRUCT = struct.Struct("<4sQQ")
END_STRUCT = struct.Struct("<4sQ")
HEADER_V1 = struct.Struct("<4sIQ")
TRAILER_V1 = struct.Struct("<4sQ")
INDEX_BYTES_PER_DATAGRAM = 4 + 16 + 2 + 8
SLOT_INDEX_BYTES_PER_DATAGRAM = 4 + INDEX_BYTES_PER_DATAGRAM  # and each one's offset
SPARES = 2  # retired segments kept for reuse
GROW_STEP = 2 << 20  # bytes a spare grows by per call of Journal.grow_spare
TMPFS_MAGIC = 0x01021994


def _segment_name(number: int) -> str:
    return f"{number:012d}.seg"


def _spare_name(number: int) -> str:
    return f"{number:012d}.spare"


class Journal:
    """Segments in ``directory``; one is open for appending at a time."""

    def __init__(self, directory: Path | str, *, mapped: bool | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Renaming, retiring, growing and mapping spares: the receiving thread and the
        # reserve's.
        self._files = threading.Lock()
        # Writes through memory maps where the journal lives in memory anyway (tmpfs): see
        # payload_area. On a disk file system written-back pages fault again on the next
        # write (ext4 page_mkwrite), which pwritev does not pay.
        self.mapped = on_tmpfs(self.directory) if mapped is None else mapped
        self._maps: dict[int, FileMap] = {}  # inode -> its file mapped, pages populated
        self._area: np.ndarray | None = None  # the open segment's mapping, if it has one
        self._slots: np.ndarray | None = None  # the area slot_area handed out last...
        self._slots_at = -1  # ...for a record at this position
        numbers = self.segments() + self.spares()
        self.current = max(numbers) + 1 if numbers else 1
        self._position = 0  # where the next record goes in the open segment
        self._fd = self._open(self.current)
        self.bytes_written = 0
        self.records = 0  # records written since start
        self.mapped_records = 0  # of which through a map (the rest: pwritev)
        self.slot_records = 0  # of which received into the map (slot records)
        self.appended_since_rotate = 0
        self.torn_records = 0

    def segments(self) -> list[int]:
        return _numbered(self.directory, ".seg")

    def spares(self) -> list[int]:
        return _numbered(self.directory, ".spare")

    def _open(self, number: int) -> int:
        """Open segment ``number`` for writing from its start: a spare renamed, else new."""
        path = self.directory / _segment_name(number)
        with self._files:
            spares = self._spare_paths()
            if spares:
                # The largest: the fewer new blocks and pages a segment needs, the cheaper.
                os.rename(max(spares, key=lambda p: p.stat().st_size), path)
                fd = os.open(path, os.O_RDWR)
                known = self._maps.get(os.fstat(fd).st_ino)
                self._area = None if known is None else known.view
            else:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                self._area = None
        os.pwrite(fd, END_STRUCT.pack(END, number), 0)
        return fd

    def payload_area(self, datagrams: int, payload_bytes: int) -> np.ndarray | None:
        """Where the payload of the next record goes in the open segment's memory map, for
        a receiver to pack up to ``datagrams`` datagrams of ``payload_bytes`` straight into
        the journal; None when the segment is not mapped or the record would not fit (then
        :meth:`append` writes it with ``pwritev``).

        Packing into the map saves the second copy of every byte (into the page cache),
        0.3-0.5 µs per 1,464-byte datagram on tmpfs here. The map's page table entries are
        populated ahead (:meth:`map_spares`), else the first write to each page faults."""
        if self._area is None:
            return None
        start = self._position + HEADER.size + datagrams * INDEX_BYTES_PER_DATAGRAM
        end = start + payload_bytes + TRAILER_STRUCT.size + END_STRUCT.size
        if end > len(self._area):
            return None
        return self._area[start : start + payload_bytes]

    def slot_area(self, slots: int, stride: int) -> np.ndarray | None:
        """Memory of the open segment's map for a receiver to receive up to ``slots``
        datagrams straight into, one per ``stride`` bytes (its head slots: see
        MultiReceiver.aim_heads); None when the segment is not mapped or the record might
        not fit. :meth:`append` of a batch whose buffer is this area writes a slot record
        around the datagrams where they lie: the kernel's copy from the socket is the only
        copy of their bytes."""
        if self._area is None:
            return None
        start = self._position + HEADER.size
        end = (
            start
            + slots * (stride + SLOT_INDEX_BYTES_PER_DATAGRAM)
            + TRAILER_STRUCT.size
            + END_STRUCT.size
        )
        if end > len(self._area):
            return None
        self._slots = self._area[start : start + slots * stride]
        self._slots_at = self._position
        return self._slots

    def append(self, batch: DatagramBatch) -> None:
        """Write one batch as one record: into the segment's memory map when it fits, else
        with a single ``pwritev``."""
        n = len(batch)
        if n == 0:
            return
        if batch.buffer is self._slots and self._slots_at == self._position:
            self._append_slots(batch)
            return
        payload = _contiguous_payload(batch)
        index = _index(batch)
        size = HEADER.size + len(index) + len(payload) + TRAILER_STRUCT.size
        header = HEADER.pack(MAGIC, n, len(payload), self.current)
        trailer = self._trailer(size)
        area = self._area
        mapped = area is not None and self._position + size + END_STRUCT.size <= len(area)
        if mapped:
            _write_mapped(area, self._position, header, [index, payload, trailer])
        else:
            written = os.pwritev(self._fd, [header, index, payload, trailer], self._position)
            if written != size + END_STRUCT.size:  # a full disk: say so, do not lose data
                raise OSError(f"journal {self.directory}: short write ({written} of {size} bytes)")
        self._count(size, mapped=mapped)

    def _trailer(self, size: int) -> bytes:
        """A record's trailer, followed by the segment's new end marker."""
        return TRAILER_STRUCT.pack(TRAILER, size, self.current) + END_STRUCT.pack(END, self.current)

    def _count(self, size: int, *, mapped: bool, slots: bool = False) -> None:
        """Account for a record of ``size`` bytes just written at the position."""
        if mapped and not self.mapped_records:
            log.info("journal %s: writing through memory maps (tmpfs)", self.directory)
        self.mapped_records += mapped
        self.slot_records += slots
        self._position += size
        self.records += 1
        self.bytes_written += size
        self.appended_since_rotate += 1

    def _append_slots(self, batch: DatagramBatch) -> None:
        """Write a slot record around datagrams received into the map (see slot_area)."""
        area, n = self._area, len(batch)
        assert area is not None
        span = int(batch.offsets[-1] + batch.lengths[-1])
        index = batch.offsets.astype("<u4").tobytes() + _index(batch)
        size = HEADER.size + span + len(index) + TRAILER_STRUCT.size
        header = HEADER.pack(MAGIC_SLOTS, n, span, self.current)
        trailer = self._trailer(size)
        _write_mapped(area, self._position, header, [batch.buffer[:span], index, trailer])
        self._slots = None
        self._count(size, mapped=True, slots=True)

    def rotate(self) -> int:
        """Start a new segment; returns its number (everything before it is closed).

        A segment with nothing written becomes the next one (renamed and re-marked), so
        flushes of an idle collector do not cycle files."""
        self.appended_since_rotate = 0
        if self._position == 0:
            previous = self.directory / _segment_name(self.current)
            self.current += 1
            os.rename(previous, self.directory / _segment_name(self.current))
            os.pwrite(self._fd, END_STRUCT.pack(END, self.current), 0)
            return self.current
        os.close(self._fd)
        self.current += 1
        self._position = 0
        self._fd = self._open(self.current)
        return self.current

    def delete_before(self, number: int) -> int:
        """Retire the segments numbered below ``number`` (they are committed): keep the
        ``SPARES`` largest files for reuse, remove the rest. Returns how many were retired."""
        retired = 0
        with self._files:
            for seg in self.segments():
                if seg >= number:
                    continue
                path = self.directory / _segment_name(seg)
                retired += 1
                if not _recyclable(path):
                    self._forget_map(path)
                    path.unlink(missing_ok=True)
                    continue
                path.rename(self.directory / _spare_name(seg))
                spares = sorted(self._spare_paths(), key=lambda p: p.stat().st_size)
                for extra in spares[: max(0, len(spares) - SPARES)]:
                    self._forget_map(extra)
                    extra.unlink(missing_ok=True)
        return retired

    def remove_spares(self) -> None:
        """Delete the spare files (a journal that will not be written again)."""
        with self._files:
            for path in self._spare_paths():
                self._forget_map(path)
                path.unlink(missing_ok=True)

    def spare_bytes(self) -> list[int]:
        """Sizes of the spare files, smallest first."""
        with self._files:
            return sorted(p.stat().st_size for p in self._spare_paths())

    def largest_file_bytes(self) -> int:
        """Size of the largest segment or spare file: the most one flush interval has
        needed (as far as the files remember; 0 for a new journal)."""
        with self._files:
            paths = [self.directory / _segment_name(n) for n in self.segments()]
            return max((p.stat().st_size for p in paths + self._spare_paths()), default=0)

    def grow_spare(self, target: int, keep_free: int = 0, step: int = GROW_STEP) -> bool:
        """Extend the smallest spare below ``target`` bytes by up to ``step`` bytes, its blocks
        allocated and its pages cached, so that a segment written over it later pays a copy
        and nothing else. False when every spare is that large, when there is no spare, or
        when growing would leave less than ``keep_free`` bytes free on the file system (the
        segment being written needs them more)."""
        with self._files:
            sizes = sorted((p.stat().st_size, p) for p in self._spare_paths())
            if not sizes or sizes[0][0] >= target:
                return False
            size, path = sizes[0]
            grow = min(step, target - size)
            free = os.statvfs(self.directory)
            if free.f_bavail * free.f_frsize - grow < keep_free:
                return False
            fd = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, size, grow)
                if not self.mapped:  # tmpfs allocates pages; map_spares then maps them
                    _load_pages(fd, size, grow)
            finally:
                os.close(fd)
        return True

    def map_all(self) -> int:
        """At start, before receiving: map the spares and the open segment (written over
        the largest spare of the last run), so that the first flush interval is written
        through a map too. Returns how many files were mapped."""
        done = self.map_spares()
        if self.mapped and self._area is None:
            mapped = self._map_file(self._fd)
            self._area = None if mapped is None else mapped.view
            done += mapped is not None
        return done

    def map_spares(self) -> int:
        """Map every spare not mapped over its whole size yet, with its page table entries
        populated for writing (MADV_POPULATE_WRITE), so that a segment written over it pays
        a copy and no page fault (a first write to a page of a fresh map faulted: ~1 µs
        per 1,464-byte datagram on tmpfs, twice what pwritev costs). For the reserve's
        thread: populating costs ~0.2 µs per datagram's worth of file. Returns how many
        spares were mapped."""
        if not self.mapped:
            return 0
        done = 0
        for path in self._spare_paths():
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # taken as a segment meanwhile, or retired
            try:
                done += self._map_file(fd) is not None
            finally:
                os.close(fd)
        return done

    def _map_file(self, fd: int) -> FileMap | None:
        """Map the file of ``fd`` over its whole size, its pages populated, and keep the map
        (by inode); a file mapped before and grown since has only its addition populated.
        None when it is mapped whole already, is empty, or its pages cannot be had."""
        info = os.fstat(fd)
        known = self._maps.get(info.st_ino)
        if info.st_size == 0 or (known is not None and len(known) >= info.st_size):
            return None
        if known is not None and info.st_size <= known.reserved:
            return known if known.extend(info.st_size) else None
        mapped = FileMap.of(fd)
        if mapped is None:
            return None  # no memory for its pages: keep writing with pwritev
        with self._files:
            self._maps[info.st_ino] = mapped
        if known is not None:
            known.release_pages()  # outgrown its address space: the new map replaces it
        return mapped

    def _forget_map(self, path: Path) -> None:
        """Drop the map of a file about to be deleted (callers hold ``_files``)."""
        with contextlib.suppress(FileNotFoundError):
            known = self._maps.pop(path.stat().st_ino, None)
            if known is not None:
                known.release_pages()

    def _spare_paths(self) -> list[Path]:
        return [self.directory / _spare_name(n) for n in self.spares()]

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
                with open(self.directory / _segment_name(seg), "rb") as f:
                    yield from self._read_segment(f, seg)

    def _read_segment(self, f: BinaryIO, number: int) -> Iterator[DatagramBatch]:
        """Records of segment ``number`` from its start, up to its end marker, the end of
        the file, or the first record that is torn (counted)."""
        version = None
        while True:
            head = f.read(HEADER.size)
            if not head:
                return
            magic = head[:4]
            if magic == END and len(head) >= END_STRUCT.size:
                if END_STRUCT.unpack_from(head)[1] != number:
                    self.torn_records += 1
                return
            slots = magic == MAGIC_SLOTS
            if magic in (MAGIC, MAGIC_SLOTS) and version in (None, 2) and len(head) == HEADER.size:
                _, n, payload_len, segment = HEADER.unpack(head)
                if segment != number:
                    return  # a spare's old record: killed before this segment's first write
                header_size, trailer = HEADER.size, TRAILER_STRUCT
            elif magic == MAGIC_V1 and version in (None, 1) and len(head) >= HEADER_V1.size:
                _, n, payload_len = HEADER_V1.unpack(head[: HEADER_V1.size])
                header_size, trailer = HEADER_V1.size, TRAILER_V1
                f.seek(HEADER_V1.size - len(head), os.SEEK_CUR)
            else:
                self.torn_records += 1
                return
            version = 1 if magic == MAGIC_V1 else 2
            index_len = n * (SLOT_INDEX_BYTES_PER_DATAGRAM if slots else INDEX_BYTES_PER_DATAGRAM)
            size = header_size + index_len + payload_len + trailer.size
            body = f.read(size - header_size)
            if len(body) != size - header_size:
                self.torn_records += 1
                return
            tail = trailer.unpack_from(body, len(body) - trailer.size)
            if tail[0] != TRAILER or tail[1] != size or (version == 2 and tail[2] != number):
                self.torn_records += 1
                return
            if slots:
                yield _batch_from_slots(body, n, payload_len)
            else:
                yield _batch_from_record(body, n, payload_len)

    def close(self) -> None:
        """Close the open segment; one with nothing written is kept as a spare (a file of
        that size is what the next start writes over)."""
        with self._files:
            for mapped in self._maps.values():
                mapped.release_pages()
            self._maps.clear()  # unmapped once the last batch viewing one is gone
        self._area = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._position == 0:
                path = self.directory / _segment_name(self.current)
                with self._files:
                    if _recyclable(path):
                        path.rename(self.directory / _spare_name(self.current))


def _index(batch: DatagramBatch) -> bytes:
    """A record's index columns (see the module docstring), little-endian."""
    return b"".join(
        [
            batch.lengths.astype("<u4").tobytes(),
            batch.source_address.astype("<u8").tobytes(),
            batch.source_port.astype("<u2").tobytes(),
            batch.arrival_ns.astype("<i8").tobytes(),
        ]
    )


def _write_mapped(
    area: np.ndarray, at: int, header: bytes, pieces: list[memoryview | bytes | np.ndarray]
) -> None:
    """Write a record into a segment's map at ``at``: ``pieces`` one after the other after
    the header, the last ending with the next end marker. A piece already in its place (as
    the receiver put it) is not copied. The header goes last: a process killed before it
    leaves the previous end marker in place, so replay ends cleanly before this record
    (read but not journaled: the same window a ``pwritev`` has)."""
    position = at + len(header)
    for piece in pieces:
        source = np.frombuffer(piece, np.uint8)
        if source.ctypes.data != area.ctypes.data + position:
            area[position : position + len(source)] = source  # overlapping ranges are safe
        position += len(source)
    area[at : at + len(header)] = np.frombuffer(header, np.uint8)


def on_tmpfs(directory: Path) -> bool:
    """Whether ``directory`` is on tmpfs (statfs f_type); False where that cannot be told."""
    lib = libc()
    if lib is None:
        return False
    buffer = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first field
    if lib.statfs(os.fsencode(directory), buffer) != 0:
        return False
    return ctypes.c_long.from_buffer(buffer).value == TMPFS_MAGIC


def _numbered(directory: Path, suffix: str) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*" + suffix) if p.stem.isdigit())


def _recyclable(path: Path) -> bool:
    """Only files written in the current format are reused (see the module docstring)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in (MAGIC, MAGIC_SLOTS, END)
    except OSError:
        return False


def _load_pages(fd: int, offset: int, length: int) -> None:
    """Read a freshly allocated range once: the file system hands back zero pages without
    touching the disk, and they stay cached for the writes to come."""
    buffer = bytearray(min(length, 1 << 20))
    done = 0
    while done < length:
        got = os.preadv(fd, [memoryview(buffer)[: length - done]], offset + done)
        if got <= 0:
            return
        done += got


def _batch_from_record(body: bytes, n: int, payload_len: int) -> DatagramBatch:
    """A record's index and payload (``body``: the record after its header)."""
    at = 0
    lengths = np.frombuffer(body, "<u4", n, at).astype(np.int64)
    at += 4 * n
    sources = np.frombuffer(body, "<u8", 2 * n, at).reshape(n, 2).astype(np.uint64)
    at += 16 * n
    ports = np.frombuffer(body, "<u2", n, at).astype(np.uint16)
    at += 2 * n
    times = np.frombuffer(body, "<i8", n, at).astype(np.int64)
    at += 8 * n
    buffer = np.frombuffer(body, np.uint8, payload_len, at)
    offsets = np.zeros(n, np.int64)
    if n > 1:
        offsets[1:] = np.cumsum(lengths[:-1])
    return DatagramBatch(buffer, offsets, lengths, sources, ports, times)


def _batch_from_slots(body: bytes, n: int, span: int) -> DatagramBatch:
    """A slot record's datagrams (``body``: the record after its header): the slot region
    of ``span`` bytes, then offsets into it and the usual index."""
    offsets = np.frombuffer(body, "<u4", n, span).astype(np.int64)
    index = _batch_from_record(body[span + 4 * n :], n, 0)
    buffer = np.frombuffer(body, np.uint8, span, 0)
    return DatagramBatch(
        buffer, offsets, index.lengths, index.source_address, index.source_port, index.arrival_ns
    )


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
