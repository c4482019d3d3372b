"""Write export datagrams as pcap/pcapng frames (Ethernet, Linux SLL or raw IP links)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LINK_ETHERNET = 1
LINK_RAW = 101
LINK_LINUX_SLL = 113
COLLECTOR_V4 = "192.0.2.1"
COLLECTOR_V6 = "2001:db8:ffff::1"


@dataclass(frozen=True)
class Datagram:
    time_ns: int
    source: str  # exporter address (IPv4 or IPv6)
    payload: bytes
    source_port: int = 50000
    destination_port: int = 2055


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_udp_packet(d: Datagram, ident: int = 0) -> bytes:
    """IPv4 or IPv6 + UDP headers (valid checksums) around a payload."""
    src = ipaddress.ip_address(d.source)
    udp_len = 8 + len(d.payload)
    if src.version == 4:
        dst = ipaddress.IPv4Address(COLLECTOR_V4)
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + udp_len,
            ident & 0xFFFF,
            0,
            64,
            17,
            0,
            src.packed,
            dst.packed,
        )
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        udp = struct.pack("!HHHH", d.source_port, d.destination_port, udp_len, 0)
        return header + udp + d.payload
    dst = ipaddress.IPv6Address(COLLECTOR_V6)
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", udp_len, 17)
    udp = struct.pack("!HHHH", d.source_port, d.destination_port, udp_len, 0)
    csum = _checksum(pseudo + udp + d.payload) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum)
    header = struct.pack("!IHBB16s16s", 6 << 28, udp_len, 17, 64, src.packed, dst.packed)
    return header + udp + d.payload


def frame(d: Datagram, linktype: int, ident: int = 0) -> bytes:
    packet = ip_udp_packet(d, ident)
    v6 = ":" in d.source
    ethertype = 0x86DD if v6 else 0x0800
    if linktype == LINK_ETHERNET:
        return (
            b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
            + struct.pack("!H", ethertype)
            + packet
        )
    if linktype == LINK_LINUX_SLL:
        return (
            struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x02\x00\x00", ethertype) + packet
        )
    if linktype == LINK_RAW:
        return packet
    raise ValueError(f"unsupported link type {linktype}")


def write_capture(
    path: Path | str,
    datagrams: Iterable[Datagram],
    *,
    linktype: int = LINK_ETHERNET,
    pcapng: bool = False,
) -> int:
    """Write a capture file; returns the number of frames written."""
    count = 0
    with Path(path).open("wb") as f:
        if pcapng:
            f.write(_pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
            # if_tsresol = 9 (nanoseconds)
            options = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
            f.write(_pcapng_block(1, struct.pack("<HHI", linktype, 0, 262144) + options))
        else:
            f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype))
        for d in datagrams:
            data = frame(d, linktype, count)
            if pcapng:
                body = struct.pack(
                    "<IIIII", 0, d.time_ns >> 32, d.time_ns & 0xFFFFFFFF, len(data), len(data)
                )
                f.write(_pcapng_block(6, body + data + b"\0" * (-len(data) % 4)))
            else:
                f.write(
                    struct.pack(
                        "<IIII",
                        d.time_ns // 1_000_000_000,
                        d.time_ns % 1_000_000_000,
                        len(data),
                        len(data),
                    )
                )
                f.write(data)
            count += 1
    return count


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)
