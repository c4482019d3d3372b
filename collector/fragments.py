"""IP fragment reassembly and IPv6 extension-header walking for captured export datagrams.

Exporters sending IPFIX or v9 messages larger than the path MTU get fragmented, and a
capture then holds the pieces. This is the slow path of the capture reader: one frame at a
time, in Python, bounded in memory (pending datagrams and their size are capped, the
oldest are evicted and counted).
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from collector.datagrams import address_to_pair

MAX_PENDING = 1024
MAX_DATAGRAM = 65_535
IPV6_SKIPPABLE = {0, 43, 60}  # hop-by-hop, routing, destination options
IPV6_FRAGMENT = 44
UDP = 17

# (payload, (addr_hi, addr_lo), source port, time ns)
Reassembled = tuple[bytes, tuple[int, int], int, int]


@dataclass
class _Pending:
    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None  # known once the last fragment arrived
    first_seen_ns: int = 0
    source: tuple[int, int] = (0, 0)


class FragmentReassembler:
    """Collect fragments per (source, destination, id) and emit whole UDP datagrams."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple, _Pending] = OrderedDict()

    def pending_count(self) -> int:
        return len(self._pending)

    def feed(self, ip: bytes, time_ns: int, skipped: Counter) -> Reassembled | None:
        """One IP packet (header included); a datagram when it completes one."""
        if not ip:
            skipped["ip_truncated"] += 1
            return None
        version = ip[0] >> 4
        if version == 4:
            return self._feed_v4(ip, time_ns, skipped)
        if version == 6:
            return self._feed_v6(ip, time_ns, skipped)
        skipped["not_ip"] += 1
        return None

    def _feed_v4(self, ip: bytes, time_ns: int, skipped: Counter) -> Reassembled | None:
        if len(ip) < 20:
            skipped["ip_truncated"] += 1
            return None
        ihl = (ip[0] & 0x0F) * 4
        total_len, ident, frag = struct.unpack_from("!HHH", ip, 2)
        proto = ip[9]
        source = address_to_pair(".".join(str(b) for b in ip[12:16]))
        body = ip[ihl : max(ihl, min(total_len, len(ip)))]
        more = bool(frag & 0x2000)
        offset = (frag & 0x1FFF) * 8
        if proto != UDP:
            skipped["not_udp"] += 1
            return None
        if not more and offset == 0:
            return _udp_payload(body, source, time_ns, skipped)
        key = (4, ip[12:20], ident, proto)
        return self._add_piece(key, source, offset, body, more, time_ns, skipped)

    def _feed_v6(self, ip: bytes, time_ns: int, skipped: Counter) -> Reassembled | None:
        if len(ip) < 40:
            skipped["ip_truncated"] += 1
            return None
        source = address_to_pair(_v6_text(ip[8:24]))
        nxt = ip[6]
        at = 40
        while nxt in IPV6_SKIPPABLE:
            if at + 2 > len(ip):
                skipped["ip_truncated"] += 1
                return None
            nxt, ext_len = ip[at], (ip[at + 1] + 1) * 8
            at += ext_len
        if nxt == IPV6_FRAGMENT:
            if at + 8 > len(ip):
                skipped["ip_truncated"] += 1
                return None
            nxt = ip[at]
            offset_flags, ident = struct.unpack_from("!HI", ip, at + 2)
            body = ip[at + 8 :]
            if nxt != UDP:
                skipped["not_udp"] += 1
                return None
            key = (6, ip[8:40], ident, nxt)
            return self._add_piece(
                key, source, offset_flags & 0xFFF8, body, bool(offset_flags & 1), time_ns, skipped
            )
        if nxt != UDP:
            skipped["not_udp"] += 1
            return None
        return _udp_payload(ip[at:], source, time_ns, skipped)

    def _add_piece(
        self,
        key: tuple,
        source: tuple[int, int],
        offset: int,
        body: bytes,
        more: bool,
        time_ns: int,
        skipped: Counter,
    ) -> Reassembled | None:
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
                skipped["ip_fragment_evicted"] += 1
            entry = self._pending[key] = _Pending(first_seen_ns=time_ns, source=source)
        if offset + len(body) > MAX_DATAGRAM:
            del self._pending[key]
            skipped["ip_fragment_oversize"] += 1
            return None
        entry.pieces[offset] = body
        if not more:
            entry.total = offset + len(body)
        if entry.total is None:
            return None
        data = bytearray()
        for off in sorted(entry.pieces):
            if off != len(data):
                return None  # a hole (or an overlap) remains
            data += entry.pieces[off]
        if len(data) != entry.total:
            return None
        del self._pending[key]
        return _udp_payload(bytes(data), entry.source, entry.first_seen_ns, skipped)


def _udp_payload(
    udp: bytes, source: tuple[int, int], time_ns: int, skipped: Counter
) -> Reassembled | None:
    if len(udp) < 8:
        skipped["udp_truncated"] += 1
        return None
    sport, _dport, length = struct.unpack_from("!HHH", udp, 0)
    if length < 8:
        skipped["udp_bad_length"] += 1
        return None
    if length > len(udp):
        skipped["frame_truncated"] += 1
        return None
    return udp[8:length], source, sport, time_ns


def _v6_text(raw: bytes) -> str:
    return ":".join(raw[i : i + 2].hex() for i in range(0, 16, 2))
