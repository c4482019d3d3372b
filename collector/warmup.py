"""A few export datagrams of each protocol, to load the compiled kernels before traffic.

numba loads a kernel's machine code from its on-disk cache on the kernel's first call:
~0.3 s for the first decode here. A collector restarted while routers are sending would
spend that time with datagrams piling up in the socket buffer (at 200,000 datagrams/s a
64 MiB buffer holds ~0.3 s), so it decodes and attributes these first, with a decoder of
its own, and throws the result away.

Built with struct from the RFC layouts (NetFlow v5, RFC 3954, RFC 7011), IPv4 and IPv6,
so every path of the hot loop is exercised; the exporter is a documentation address.
"""

from __future__ import annotations

import struct

from collector.datagrams import DatagramBatch

EXPORTER = "192.0.2.1"
EXPORT_SECONDS = 1_800_000_000
UPTIME_MS = 1_000_000

# (element, length): addresses, counts, interfaces, and absolute or sysUpTime times
_IPFIX_V4 = [(8, 4), (12, 4), (1, 8), (2, 8), (10, 4), (14, 4), (152, 8), (153, 8)]
_IPFIX_V6 = [(27, 16), (28, 16), (1, 8), (2, 8), (10, 4), (14, 4), (152, 8), (153, 8)]
_V9_V4 = [(8, 4), (12, 4), (1, 4), (2, 4), (10, 2), (14, 2), (22, 4), (21, 4)]


def _v5(records: int = 1) -> bytes:
    header = struct.pack(">HHIIIIBBH", 5, records, UPTIME_MS, EXPORT_SECONDS, 0, 0, 0, 0, 0)
    record = struct.pack(
        ">IIIHHIIIIHHBBBBHHBBH",
        0x0A000001,
        0x5DB8D822,
        0,
        1,
        2,
        1,
        100,
        UPTIME_MS - 2000,
        UPTIME_MS - 1000,
        1234,
        443,
        0,
        0,
        6,
        0,
        0,
        0,
        24,
        0,
        0,
    )
    return header + record * records


def _template(set_id: int, template_id: int, fields: list[tuple[int, int]]) -> bytes:
    body = struct.pack(">HH", template_id, len(fields))
    body += b"".join(struct.pack(">HH", e, n) for e, n in fields)
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def _data(set_id: int, record: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(record)) + record


def _ipfix() -> bytes:
    start_ms = EXPORT_SECONDS * 1000 - 2000
    v4 = struct.pack(">IIQQIIQQ", 0x0A000001, 0x5DB8D822, 100, 1, 1, 2, start_ms, start_ms + 1)
    v6 = (
        bytes.fromhex("20010db8000000000000000000000001")
        + bytes.fromhex("2001067c000000000000000000000002")
        + struct.pack(">QQIIQQ", 100, 1, 1, 2, start_ms, start_ms + 1)
    )
    sets = (
        _template(2, 256, _IPFIX_V4)
        + _template(2, 257, _IPFIX_V6)
        + _data(256, v4)
        + _data(257, v6)
    )
    return struct.pack(">HHIII", 10, 16 + len(sets), EXPORT_SECONDS, 0, 0) + sets


def _v9() -> bytes:
    record = struct.pack(
        ">IIIIHHII", 0x0A000001, 0x5DB8D822, 100, 1, 1, 2, UPTIME_MS - 2000, UPTIME_MS - 1000
    )
    flowsets = _template(0, 256, _V9_V4) + _data(256, record)
    return struct.pack(">HHIIII", 9, 2, UPTIME_MS, EXPORT_SECONDS, 0, 0) + flowsets


def sample_datagrams(full_batch: int = 0) -> DatagramBatch:
    """One datagram each of NetFlow v5, NetFlow v9 and IPFIX (IPv4 and IPv6 records),
    then ``full_batch`` datagrams of 30 v5 records: a batch of the size the collector
    takes at full rate, so that the heap has grown to what such a batch needs."""
    payloads = [_v5(), _v9(), _ipfix()]
    payloads += [_v5(records=30)] * full_batch
    return DatagramBatch.from_payloads(payloads, [EXPORTER] * len(payloads))
