"""Slow, obviously correct references for the numba kernels (compared on generated inputs).

Each one is a direct transcription of the definition with Python integers and the
standard library, no numpy tricks, so that a disagreement points at the kernel.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

DIR_IN, DIR_OUT, DIR_NONE = 0, 1, 2


def lpm(
    networks: list[tuple[ipaddress._BaseNetwork, int]],
    address: ipaddress._BaseAddress,
    *,
    mapped_as_ipv4: bool = True,
) -> int:
    """Value of the longest network containing ``address`` (-1 when none does). An
    IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4 address, as egress defines it
    (docs/architecture.md, trie layout), unless ``mapped_as_ipv4`` is False (a single
    family's trie, which knows nothing of the other)."""
    if mapped_as_ipv4 and address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    best_len, best = -1, -1
    for net, value in networks:
        if net.version == address.version and address in net and net.prefixlen > best_len:
            best_len, best = net.prefixlen, value
    return best


def classify(src_member: int, dst_member: int, n_members: int) -> tuple[int, int]:
    """(owner row, direction) from the members of both ends (-1 = no member)."""
    if src_member >= 0 and dst_member >= 0:
        return n_members, DIR_NONE
    if src_member >= 0:
        return src_member, DIR_OUT
    if dst_member >= 0:
        return dst_member, DIR_IN
    return n_members + 1, DIR_NONE


def spread(count: int, start: int, end: int, bin_ms: int) -> dict[int, int]:
    """Parts of ``count`` per bin start for a flow over [start, end), pro rata of time.

    The part before a boundary t is floor(count * (t - start) / (end - start)).
    """
    if end <= start or start // bin_ms == end // bin_ms:
        return {(start // bin_ms) * bin_ms: count}
    parts: dict[int, int] = {}
    done = 0
    b = start // bin_ms
    while b <= end // bin_ms:
        boundary = min((b + 1) * bin_ms, end)
        cum = count * (boundary - start) // (end - start)
        parts[b * bin_ms] = parts.get(b * bin_ms, 0) + cum - done
        done = cum
        b += 1
    return parts


def usage(flows: list[dict], n_members: int, bin_ms: int) -> dict[tuple[int, int, int], list[int]]:
    """(bin start, owner row, direction) -> [bytes, packets, flows] for attributed flows.

    Each flow dict has: owner, direction, bytes, packets, start, end (already scaled).
    """
    out: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for f in flows:
        for b, part in spread(f["bytes"], f["start"], f["end"], bin_ms).items():
            out[(b, f["owner"], f["direction"])][0] += part
        for b, part in spread(f["packets"], f["start"], f["end"], bin_ms).items():
            out[(b, f["owner"], f["direction"])][1] += part
        first_bin = (f["start"] // bin_ms) * bin_ms
        out[(first_bin, f["owner"], f["direction"])][2] += 1
    return {k: v for k, v in out.items() if any(v)}
