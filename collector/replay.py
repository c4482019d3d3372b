"""Send the export datagrams of a capture to a collector over UDP, for tests, demos and
benchmarks.

Each original exporter keeps its own identity when sending to a loopback collector: it
is given its own source address in 127.0.0.0/8 (Linux answers for the whole block on
``lo``), so allow-lists and per-exporter state behave as with the real routers. Export
header times can be shifted so that an old capture looks current (``shift_ms``): v5 and
v9 headers (and therefore their sysUptime-relative flow times) and the IPFIX export time
are rewritten; absolute flow times inside v9/IPFIX records are not.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from collector.datagrams import pair_to_address
from collector.pcap import read_datagrams

LOOPBACK_BASE = int(ipaddress.IPv4Address("127.0.1.1"))


@dataclass
class ReplayStats:
    datagrams: int = 0
    bytes: int = 0
    seconds: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)  # original exporter -> sent from


def iter_payloads(path: Path | str) -> Iterator[tuple[int, str, bytes]]:
    """(capture time ns, exporter address, payload) of every UDP datagram of a capture."""
    for batch in read_datagrams(path):
        view = memoryview(batch.buffer)
        for i in range(len(batch)):
            start = int(batch.offsets[i])
            yield (
                int(batch.arrival_ns[i]),
                str(pair_to_address(*batch.source_address[i])),
                bytes(view[start : start + int(batch.lengths[i])]),
            )


def shift_export_time(payload: bytes, shift_ms: int) -> bytes:
    """The datagram with its header export time moved by ``shift_ms`` (v5, v9, IPFIX)."""
    if len(payload) < 16 or shift_ms == 0:
        return payload
    version = struct.unpack_from("!H", payload)[0]
    data = bytearray(payload)
    if version == 5 and len(payload) >= 24:
        secs, nsecs = struct.unpack_from("!II", payload, 8)
        total = secs * 1000 + nsecs // 1_000_000 + shift_ms
        struct.pack_into(
            "!II", data, 8, (total // 1000) % 2**32, (total % 1000) * 1_000_000 + nsecs % 1_000_000
        )
    elif version == 9 and len(payload) >= 20:
        secs = struct.unpack_from("!I", payload, 8)[0]
        struct.pack_into("!I", data, 8, (secs + shift_ms // 1000) % 2**32)
    elif version == 10:
        secs = struct.unpack_from("!I", payload, 4)[0]
        struct.pack_into("!I", data, 4, (secs + shift_ms // 1000) % 2**32)
    return bytes(data)


def first_export_ms(path: Path | str) -> int | None:
    """Export time (header) of the first v5/v9/IPFIX datagram of a capture."""
    for _, _, p in iter_payloads(path):
        if len(p) < 16:
            continue
        version = struct.unpack_from("!H", p)[0]
        if version == 5 and len(p) >= 24:
            secs, nsecs = struct.unpack_from("!II", p, 8)
            return secs * 1000 + nsecs // 1_000_000
        if version == 9 and len(p) >= 20:
            return struct.unpack_from("!I", p, 8)[0] * 1000
        if version == 10:
            return struct.unpack_from("!I", p, 4)[0] * 1000
    return None


def replay(
    path: Path | str,
    host: str,
    port: int,
    *,
    rate: float | None = None,
    speed: float | None = None,
    shift_ms: int = 0,
    source: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Send every datagram of ``path`` to host:port; see the module docstring.

    ``rate``: datagrams per second; ``speed``: multiple of the capture's own pace; neither:
    as fast as the socket takes them. ``source``: send everything from this address
    (default: one 127.0.1.x address per exporter when the target is loopback).
    """
    target = ipaddress.ip_address(host)
    family = socket.AF_INET6 if target.version == 6 else socket.AF_INET
    per_exporter = source is None and target.is_loopback and target.version == 4
    sockets: dict[str, socket.socket] = {}
    stats = ReplayStats()

    def sender(exporter: str) -> socket.socket:
        sock = sockets.get(exporter)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            if per_exporter:
                bind_to = str(ipaddress.IPv4Address(LOOPBACK_BASE + len(sockets)))
            else:
                bind_to = source or ("::" if family == socket.AF_INET6 else "0.0.0.0")
            sock.bind((bind_to, 0))
            sockets[exporter] = sock
            stats.sources[exporter] = bind_to
        return sock

    began = time.monotonic()
    first_capture_ns: int | None = None
    try:
        for i, (capture_ns, exporter, payload) in enumerate(iter_payloads(path)):
            if rate:
                _wait_until(began + i / rate)
            elif speed:
                first_capture_ns = capture_ns if first_capture_ns is None else first_capture_ns
                _wait_until(began + (capture_ns - first_capture_ns) / 1e9 / speed)
            data = shift_export_time(payload, shift_ms)
            sock = sender(exporter)
            while True:
                try:
                    sock.sendto(data, (host, port))
                    break
                except BlockingIOError:
                    time.sleep(0.0005)
            stats.datagrams += 1
            stats.bytes += len(data)
            if progress and stats.datagrams % 1000 == 0:
                progress(stats.datagrams)
    finally:
        for sock in sockets.values():
            sock.close()
    stats.seconds = time.monotonic() - began
    return stats


def _wait_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0.0005:
        time.sleep(delay)
