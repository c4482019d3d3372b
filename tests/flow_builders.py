"""Hand-built NetFlow v9 / IPFIX messages for decoder tests (struct only, no decoder code),
and a helper that runs decode + attribution and compares with a ground truth."""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter

import numpy as np

from collector.datagrams import DatagramBatch


def ipfix_set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def ipfix_template(tid: int, fields: list[tuple], *, scope: int | None = None) -> bytes:
    """A template record; fields are (id, length) or (id, length, enterprise)."""
    head = (
        struct.pack(">HH", tid, len(fields))
        if scope is None
        else struct.pack(">HHH", tid, len(fields), scope)
    )
    body = b""
    for f in fields:
        if len(f) == 3 and f[2]:
            body += struct.pack(">HHI", f[0] | 0x8000, f[1], f[2])
        else:
            body += struct.pack(">HH", f[0], f[1])
    return head + body


def ipfix_message(
    sets: list[bytes], *, seq: int = 0, domain: int = 0, export_s: int = 1_800_000_000
) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_s, seq, domain) + body


def v9_packet(
    flowsets: list[bytes],
    *,
    seq: int = 0,
    source_id: int = 0,
    unix_secs: int = 1_800_000_000,
    uptime: int = 1_000_000,
) -> bytes:
    return struct.pack(">HHIIII", 9, len(flowsets), uptime, unix_secs, seq, source_id) + b"".join(
        flowsets
    )


def v9_template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", *f) for f in fields)


def ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def batch(
    payloads: list[bytes], sources: list[str] | str = "192.0.2.1", arrival_ns=None
) -> DatagramBatch:
    if isinstance(sources, str):
        sources = [sources] * len(payloads)
    return DatagramBatch.from_payloads(payloads, sources, arrival_ns)


def usage_by_key(result_parts, n_members: int) -> Counter:
    """(owner, bin, direction) -> bytes, owner -2 internal / -1 unattributed (truth's codes)."""
    got: Counter = Counter()
    for u in result_parts:
        for b, o, d, by in zip(
            u.bin_start_ms.tolist(),
            u.owner.tolist(),
            u.direction.tolist(),
            u.bytes.tolist(),
            strict=True,
        ):
            owner = o if o < n_members else (-2 if o == n_members else -1)
            got[(owner, b, d)] += by
    return +got


def truth_by_key(truth) -> Counter:
    want: Counter = Counter()
    for o, b, d, by in zip(
        truth.owner.tolist(),
        truth.bin_start_ms.tolist(),
        truth.direction.tolist(),
        truth.bytes.tolist(),
        strict=True,
    ):
        want[(o, b, d)] += by
    return +want


def member_table(members):
    from accounting.members import compile_members
    from accounting.registry import MemberConfig

    return compile_members(
        [
            MemberConfig(m.id, m.name, tuple(ipaddress.ip_network(p) for p in m.prefixes))
            for m in members
        ]
    )


def decode_and_attribute(
    capture, members, *, chunk_bytes: int = 1 << 20, decoder=None, bin_ms=300_000
):
    """Run the real path (pcap -> Decoder -> attribute) and return (usage, notes, dropped, flows)."""
    from accounting.attribution import attribute
    from collector.decode import Decoder
    from collector.pcap import read_datagrams

    table = member_table(members)
    decoder = decoder or Decoder()
    notes: Counter = Counter()
    dropped: Counter = Counter()
    parts, flows = [], []
    for b in read_datagrams(capture, chunk_bytes=chunk_bytes):
        r = decoder.decode(b)
        notes.update(r.notes)
        dropped.update(r.dropped)
        if len(r.flows):
            flows.append(r.flows)
            parts.append(attribute(r.flows, table, bin_ms=bin_ms, notes=notes))
    return usage_by_key(parts, len(members)), notes, dropped, flows


def column(flows, name: str) -> np.ndarray:
    return np.concatenate([getattr(f, name) for f in flows]) if flows else np.zeros(0)
