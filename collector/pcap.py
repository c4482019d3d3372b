"""Read export datagrams out of pcap and pcapng files, fast, without scapy.

The file is memory-mapped, so payloads are views into the page cache and nothing is
copied. A short Python loop walks the record chain (one ``unpack_from`` per frame: the
format is a chain, nothing vectorises it without a JIT), then the link, IP and UDP headers
of every frame of a window (~16 MiB) are parsed at once with numpy. Rare shapes (IPv6 extension headers, stacked VLANs beyond two, IP fragments) take a
per-frame slow path. Frames that carry no UDP are counted, never raised.

A structurally corrupt file (bad magic, a record longer than the snap length, a file cut
in the middle of a record) raises :class:`CaptureError` naming the file and byte offset.
"""

from __future__ import annotations

import mmap
import os
import queue
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from collector.datagrams import DatagramBatch
from collector.errors import EgressError
from collector.fragments import FragmentReassembler

CHUNK_BYTES = 16 * 1024 * 1024
MAX_FRAME = 256 * 1024  # larger than any snaplen tools write; beyond it the header is garbage

# Link types (https://www.tcpdump.org/linktypes.html)
LINK_NULL = 0
LINK_ETHERNET = 1
LINK_RAW = 101
LINK_LOOP = 108
LINK_LINUX_SLL = 113
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_LINUX_SLL2 = 276
LINK_RAW_LEGACY = (12, 14)
SUPPORTED_LINKS = {
    LINK_NULL,
    LINK_ETHERNET,
    LINK_RAW,
    LINK_LOOP,
    LINK_LINUX_SLL,
    LINK_IPV4,
    LINK_IPV6,
    LINK_LINUX_SLL2,
    *LINK_RAW_LEGACY,
}

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D


class CaptureError(EgressError):
    """The capture file itself is unreadable at a given offset."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt capture at byte offset {offset}: {reason}")
        self.path = str(path)
        self.offset = offset
        self.reason = reason


@dataclass
class CaptureStats:
    """What reading a capture saw, by kind (frames that are not export datagrams included)."""

    frames: int = 0
    bytes_read: int = 0
    udp_datagrams: int = 0
    skipped: Counter = field(default_factory=Counter)


@dataclass
class _FrameTable:
    """Frames of one window of the file, before link/IP parsing (offsets are absolute)."""

    offsets: list[int] = field(default_factory=list)  # start of frame data in the file
    caplens: list[int] = field(default_factory=list)
    linktypes: list[int] = field(default_factory=list)  # one entry: same for all frames
    times_ns: list[int] = field(default_factory=list)


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


class _BackgroundHasher:
    """Feeds file windows to a hasher on another thread (hashlib releases the GIL), so a
    file's digest costs no wall time on a machine with a spare core."""

    def __init__(self, hasher: Hasher) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, args=(hasher,), daemon=True)
        self._thread.start()

    def _run(self, hasher: Hasher) -> None:
        while (data := self._queue.get()) is not None:
            hasher.update(data)

    def update(self, data: memoryview) -> None:
        self._queue.put(data)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()


def read_datagrams(
    path: Path | str,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    stats: CaptureStats | None = None,
    hasher: Hasher | None = None,
) -> Iterator[DatagramBatch]:
    """Yield batches of the UDP payloads found in a pcap/pcapng file, in file order.

    The file is memory-mapped: payloads are views into it, nothing is copied. Each batch
    covers about ``chunk_bytes`` of the file. ``stats`` (if given) is updated as the file
    is read: frames, bytes and skip reasons. ``hasher`` (e.g. ``hashlib.sha256()``) is fed
    every byte of the file, in order, on a background thread; it is complete when the
    iteration ends.
    """
    path = Path(path)
    stats = stats if stats is not None else CaptureStats()
    reassembler = FragmentReassembler()
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 4:
            raise CaptureError(path, 0, "file shorter than a capture header")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data = memoryview(mapped)
    buf = np.frombuffer(mapped, dtype=np.uint8)
    feeder = _BackgroundHasher(hasher) if hasher is not None else None
    head = bytes(data[:4])
    if head in PCAP_MAGICS:
        windows = _walk_pcap(data, path, chunk_bytes)
    elif struct.unpack("<I", head)[0] == PCAPNG_SHB:
        windows = _walk_pcapng(data, path, chunk_bytes)
    else:
        raise CaptureError(path, 0, f"not a pcap or pcapng file (magic {head.hex()})")
    hashed = 0
    try:
        for table, window_end in windows:
            if feeder is not None:
                feeder.update(data[hashed:window_end])
                hashed = window_end
            stats.frames += len(table.offsets)
            stats.bytes_read = window_end
            for batch in parse_frames(buf, table, stats.skipped, reassembler):
                stats.udp_datagrams += len(batch)
                if len(batch):
                    yield batch
    finally:
        if feeder is not None:
            feeder.update(data[hashed:])
            feeder.finish()
    stats.bytes_read = size
    stats.skipped["ip_fragment_incomplete"] += reassembler.pending_count()
    for reason in [r for r, c in stats.skipped.items() if not c]:
        del stats.skipped[reason]


def _walk_pcap(data: memoryview, path: Path, chunk_bytes: int) -> Iterator[tuple[_FrameTable, int]]:
    """Frame tables of successive windows of a classic pcap file, and where each ends."""
    if len(data) < 24:
        raise CaptureError(path, 0, "pcap file header truncated")
    endian, ns_per_unit = PCAP_MAGICS[bytes(data[:4])]
    _major, _minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(
        endian + "HHiIII", data, 4
    )
    linktype &= 0x0FFF_FFFF  # upper bits carry FCS info
    max_caplen = min(max(snaplen, 65535) if snaplen else MAX_FRAME, MAX_FRAME)
    unpack_length = struct.Struct(endian + "I").unpack_from
    times = np.dtype([("sec", endian + "u4"), ("frac", endian + "u4")])
    size = len(data)
    pos = 24
    while pos < size:
        table = _FrameTable(linktypes=[linktype])
        offsets = table.offsets
        stop = min(size, pos + chunk_bytes)
        # The loop does the least it can per frame: the rest is vectorised below.
        while pos < stop:
            if pos + 16 > size:
                raise CaptureError(path, pos, "file ends in the middle of a record header")
            incl = unpack_length(data, pos + 8)[0]
            if incl > max_caplen:
                raise CaptureError(
                    path, pos, f"record length {incl} exceeds the snap length {max_caplen}"
                )
            if pos + 16 + incl > size:
                raise CaptureError(path, pos, "file ends in the middle of a record")
            offsets.append(pos)
            pos += 16 + incl
        headers = np.asarray(offsets, dtype=np.int64)
        raw = np.frombuffer(data, dtype=np.uint8)
        rec = (
            raw[headers[:, None] + np.arange(16)]
            .view(np.dtype([("t", times), ("incl", endian + "u4"), ("orig", endian + "u4")]))
            .reshape(-1)
        )
        table.offsets = (headers + 16).tolist()
        table.caplens = rec["incl"].astype(np.int64).tolist()
        table.times_ns = (
            rec["t"]["sec"].astype(np.int64) * 1_000_000_000
            + rec["t"]["frac"].astype(np.int64) * ns_per_unit
        ).tolist()
        yield table, pos


def _walk_pcapng(
    data: memoryview, path: Path, chunk_bytes: int
) -> Iterator[tuple[_FrameTable, int]]:
    """Frame tables of successive windows of a pcapng file, and where each ends."""
    endian = "<"
    interfaces: list[tuple[int, int]] = []  # (linktype, ns per timestamp unit)
    size = len(data)
    pos = 0
    while pos < size:
        table = _FrameTable()
        links = table.linktypes
        stop = min(size, pos + chunk_bytes)
        while pos < stop:
            if pos + 12 > size:
                raise CaptureError(path, pos, "file ends in the middle of a block header")
            block_type = struct.unpack_from(endian + "I", data, pos)[0]
            if block_type == PCAPNG_SHB:
                bom_bytes = bytes(data[pos + 8 : pos + 12])
                if bom_bytes == struct.pack("<I", PCAPNG_BYTE_ORDER_MAGIC):
                    endian = "<"
                elif bom_bytes == struct.pack(">I", PCAPNG_BYTE_ORDER_MAGIC):
                    endian = ">"
                else:
                    raise CaptureError(path, pos, "bad pcapng byte-order magic")
                interfaces = []
            block_len = struct.unpack_from(endian + "I", data, pos + 4)[0]
            if block_len < 12 or block_len % 4 or block_len > MAX_FRAME + 4096:
                raise CaptureError(path, pos, f"bad pcapng block length {block_len}")
            if pos + block_len > size:
                raise CaptureError(path, pos, "file ends in the middle of a block")
            if block_type == 0x00000001:  # interface description block
                linktype = struct.unpack_from(endian + "H", data, pos + 8)[0]
                interfaces.append((linktype, _pcapng_tsresol(data, pos, block_len, endian)))
            elif block_type == 0x00000006:  # enhanced packet block
                iface, ts_hi, ts_lo, caplen, _origlen = struct.unpack_from(
                    endian + "IIIII", data, pos + 8
                )
                if iface >= len(interfaces):
                    raise CaptureError(path, pos, f"packet names unknown interface {iface}")
                if 28 + caplen + 4 > block_len:
                    raise CaptureError(path, pos, "packet data overruns its block")
                linktype, ns_per_unit = interfaces[iface]
                table.offsets.append(pos + 28)
                table.caplens.append(caplen)
                links.append(linktype)
                table.times_ns.append(((ts_hi << 32) | ts_lo) * ns_per_unit)
            elif block_type == 0x00000003:  # simple packet block: interface 0, no time
                if not interfaces:
                    raise CaptureError(path, pos, "packet before any interface")
                origlen = struct.unpack_from(endian + "I", data, pos + 8)[0]
                table.offsets.append(pos + 12)
                table.caplens.append(min(origlen, block_len - 16))
                links.append(interfaces[0][0])
                table.times_ns.append(0)
            pos += block_len
        yield table, pos


def _pcapng_tsresol(chunk: bytes, pos: int, block_len: int, endian: str) -> int:
    """Nanoseconds per timestamp unit from an IDB's if_tsresol option (default µs)."""
    opt = pos + 16
    limit = pos + block_len - 4
    while opt + 4 <= limit:
        code, length = struct.unpack_from(endian + "HH", chunk, opt)
        if code == 0:
            break
        if code == 9 and length >= 1:
            res = chunk[opt + 4]
            if res & 0x80:
                return max(1, int(1e9 / (2 ** (res & 0x7F))))
            return max(1, 10 ** (9 - min(res, 9)))
        opt += 4 + ((length + 3) & ~3)
    return 1_000


def _be16(buf, at: np.ndarray) -> np.ndarray:
    return (buf[at].astype(np.int64) << 8) | buf[at + 1]


class _ClippedReader:
    """Fancy-index reads that never run past the end of the file.

    Header fields are read at fixed offsets before a frame's length is checked against
    them (checks come after, vectorised); near the end of the file such a read is clipped
    to the last byte instead of copying the file to pad it.
    """

    def __init__(self, buf: np.ndarray) -> None:
        self._buf = buf
        self._last = len(buf) - 1

    def __getitem__(self, at: np.ndarray) -> np.ndarray:
        return self._buf[np.minimum(at, self._last)]


def parse_frames(
    buf: np.ndarray,
    table: _FrameTable,
    skipped: Counter,
    reassembler: FragmentReassembler,
) -> list[DatagramBatch]:
    """Vectorised link -> IP -> UDP parsing of every frame of a window.

    Returns the fast-path batch (views into ``buf``) and, when the window held IP
    fragments or IPv6 extension headers, a second batch of what the slow path produced.
    """
    n = len(table.offsets)
    if n == 0:
        return []
    start = np.asarray(table.offsets, dtype=np.int64)
    caplen = np.asarray(table.caplens, dtype=np.int64)
    times = np.asarray(table.times_ns, dtype=np.int64)
    links = np.asarray(table.linktypes, dtype=np.int64)
    if len(links) == 1 and n > 1:
        links = np.full(n, links[0], dtype=np.int64)
    rd = _ClippedReader(buf)
    frame_end = start + caplen

    l3 = np.full(n, -1, dtype=np.int64)  # offset of the IP header, -1 = not IP
    unsupported = ~np.isin(links, list(SUPPORTED_LINKS))
    if unsupported.any():
        for lt in np.unique(links[unsupported]):
            skipped[f"linktype_{int(lt)}_unsupported"] += int((links == lt).sum())

    eth = links == LINK_ETHERNET
    if eth.any():
        at = start[eth] + 12
        etype = _be16(rd, at)
        for _ in range(2):  # up to two 802.1Q / 802.1ad tags
            tagged = (etype == 0x8100) | (etype == 0x88A8)
            at = np.where(tagged, at + 4, at)
            etype = np.where(tagged, _be16(rd, at), etype)
        is_ip = (etype == 0x0800) | (etype == 0x86DD)
        l3[eth] = np.where(is_ip, at + 2, -1)
    sll = links == LINK_LINUX_SLL
    if sll.any():
        etype = _be16(rd, start[sll] + 14)
        l3[sll] = np.where((etype == 0x0800) | (etype == 0x86DD), start[sll] + 16, -1)
    sll2 = links == LINK_LINUX_SLL2
    if sll2.any():
        etype = _be16(rd, start[sll2])
        l3[sll2] = np.where((etype == 0x0800) | (etype == 0x86DD), start[sll2] + 20, -1)
    raw = np.isin(links, [LINK_RAW, LINK_IPV4, LINK_IPV6, *LINK_RAW_LEGACY])
    l3[raw] = start[raw]
    null = (links == LINK_NULL) | (links == LINK_LOOP)
    if null.any():
        l3[null] = start[null] + 4  # family word; the IP version nibble decides below

    ok = (l3 >= 0) & (l3 + 20 <= frame_end)
    skipped["not_ip"] += int((~ok & ~unsupported).sum())
    version = np.where(ok, rd[np.where(ok, l3, 0)] >> 4, 0)
    v4 = ok & (version == 4)
    v6 = ok & (version == 6) & (l3 + 40 <= frame_end)
    skipped["not_ip"] += int((ok & (version != 4) & (version != 6)).sum())
    skipped["ip_truncated"] += int((ok & (version == 6) & ~v6).sum())

    udp = np.full(n, -1, dtype=np.int64)
    addr = np.zeros((n, 2), dtype=np.uint64)
    slow = np.zeros(n, dtype=bool)

    if v4.any():
        at = l3[v4]
        ihl = (rd[at] & 0x0F).astype(np.int64) * 4
        proto = rd[at + 9]
        frag = _be16(rd, at + 6)
        is_frag = (frag & 0x3FFF) != 0  # MF flag or a fragment offset
        src = (
            (rd[at + 12].astype(np.uint64) << np.uint64(24))
            | (rd[at + 13].astype(np.uint64) << np.uint64(16))
            | (rd[at + 14].astype(np.uint64) << np.uint64(8))
            | rd[at + 15].astype(np.uint64)
        )
        idx = np.flatnonzero(v4)
        addr[idx, 1] = np.uint64(0xFFFF_0000_0000) | src
        is_udp = (proto == 17) & ~is_frag & (ihl >= 20)
        udp[idx[is_udp]] = at[is_udp] + ihl[is_udp]
        slow[idx[is_frag]] = True
        skipped["not_udp"] += int(((proto != 17) & ~is_frag).sum())
    if v6.any():
        at = l3[v6]
        nxt = rd[at + 6]
        idx = np.flatnonzero(v6)
        hi = np.zeros(len(at), np.uint64)
        lo = np.zeros(len(at), np.uint64)
        for k in range(8):
            hi = (hi << np.uint64(8)) | rd[at + 8 + k].astype(np.uint64)
            lo = (lo << np.uint64(8)) | rd[at + 16 + k].astype(np.uint64)
        addr[idx, 0] = hi
        addr[idx, 1] = lo
        direct = nxt == 17
        udp[idx[direct]] = at[direct] + 40
        ext = np.isin(nxt, [0, 43, 44, 60])
        slow[idx[ext]] = True
        skipped["not_udp"] += int((~direct & ~ext).sum())

    has_udp = (udp >= 0) & (udp + 8 <= frame_end)
    skipped["udp_truncated"] += int(((udp >= 0) & ~has_udp).sum())
    udp_at = np.where(has_udp, udp, 0)
    udp_len = _be16(rd, udp_at + 4)
    payload_off = udp_at + 8
    captured = frame_end - payload_off
    declared = udp_len - 8
    bad_len = has_udp & (declared < 0)
    skipped["udp_bad_length"] += int(bad_len.sum())
    short = has_udp & ~bad_len & (captured < declared)
    skipped["frame_truncated"] += int(short.sum())
    good = has_udp & ~bad_len & ~short
    sel = np.flatnonzero(good)

    batches = [
        DatagramBatch(
            buf,
            payload_off[sel],
            declared[sel],
            addr[sel],
            _be16(rd, udp_at[sel]).astype(np.uint16),
            times[sel],
        )
    ]
    if slow.any():
        extra = _slow_path(
            buf, start, caplen, l3, times, np.flatnonzero(slow), reassembler, skipped
        )
        if extra:
            batches.append(_payload_batch(extra))
    return batches


def _slow_path(
    buf: np.ndarray,
    start: np.ndarray,
    caplen: np.ndarray,
    l3: np.ndarray,
    times: np.ndarray,
    rows: np.ndarray,
    reassembler: FragmentReassembler,
    skipped: Counter,
) -> list[tuple[bytes, tuple[int, int], int, int]]:
    """IP fragments and IPv6 extension headers, one frame at a time (rare)."""
    out = []
    for i in rows:
        ip = buf[int(l3[i]) : int(start[i] + caplen[i])].tobytes()
        result = reassembler.feed(ip, int(times[i]), skipped)
        if result is not None:
            out.append(result)
    return out


def _payload_batch(extra: list[tuple[bytes, tuple[int, int], int, int]]) -> DatagramBatch:
    """A batch of its own for datagrams the slow path produced (reassembled fragments)."""
    lengths = np.array([len(p) for p, *_ in extra], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return DatagramBatch(
        np.frombuffer(b"".join(p for p, *_ in extra), np.uint8),
        offsets,
        lengths,
        np.array([a for _, a, _, _ in extra], dtype=np.uint64).reshape(-1, 2),
        np.array([p for _, _, p, _ in extra], dtype=np.uint16),
        np.array([t for *_, t in extra], dtype=np.int64),
    )
