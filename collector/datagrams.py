"""DatagramBatch: many export datagrams sharing one byte buffer.

Both sources of datagrams (capture files and live sockets) hand the decoders this shape,
so decoding never cares where the bytes came from and never creates a Python object per
datagram beyond a slice when it needs one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

# IPv4 exporters are stored IPv4-mapped (::ffff:a.b.c.d) so one (hi, lo) pair covers both.
V4_MAPPED_HI = np.uint64(0)
V4_MAPPED_LO_PREFIX = np.uint64(0xFFFF_0000_0000)


@dataclass(frozen=True, slots=True)
class DatagramBatch:
    """n UDP payloads: ``buffer[offsets[i] : offsets[i] + lengths[i]]``."""

    buffer: np.ndarray  # uint8, the bytes all payloads live in
    offsets: np.ndarray  # int64[n]
    lengths: np.ndarray  # int64[n]
    source_address: np.ndarray  # uint64[n, 2], IPv6 or IPv4-mapped exporter address
    source_port: np.ndarray  # uint16[n]
    arrival_ns: np.ndarray  # int64[n], capture or receive time, unix ns

    def __len__(self) -> int:
        return len(self.offsets)

    def payload(self, i: int) -> memoryview:
        """One datagram's bytes (for slow paths only)."""
        start = int(self.offsets[i])
        return memoryview(self.buffer)[start : start + int(self.lengths[i])]

    def select(self, index: np.ndarray) -> DatagramBatch:
        return DatagramBatch(
            self.buffer,
            self.offsets[index],
            self.lengths[index],
            self.source_address[index],
            self.source_port[index],
            self.arrival_ns[index],
        )

    @classmethod
    def from_payloads(
        cls,
        payloads: list[bytes],
        sources: list[str] | None = None,
        arrival_ns: list[int] | None = None,
    ) -> DatagramBatch:
        """Batch from individual payloads (tests, sockets, reassembled fragments)."""
        lengths = np.array([len(p) for p in payloads], dtype=np.int64)
        offsets = np.zeros(len(payloads), dtype=np.int64)
        if len(payloads) > 1:
            offsets[1:] = np.cumsum(lengths[:-1])
        buffer = np.frombuffer(b"".join(payloads), dtype=np.uint8)
        addrs = np.zeros((len(payloads), 2), dtype=np.uint64)
        for i, text in enumerate(sources or ["127.0.0.1"] * len(payloads)):
            addrs[i] = address_to_pair(text)
        times = np.array(arrival_ns or [0] * len(payloads), dtype=np.int64)
        ports = np.zeros(len(payloads), dtype=np.uint16)
        return cls(buffer, offsets, lengths, addrs, ports, times)


def address_to_pair(text: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    """(hi, lo) 64-bit halves of an address; IPv4 is IPv4-mapped."""
    addr = ipaddress.ip_address(text) if isinstance(text, str) else text
    if addr.version == 4:
        value = 0xFFFF_0000_0000 | int(addr)
    else:
        value = int(addr)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def pair_to_address(hi: int, lo: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Inverse of :func:`address_to_pair`."""
    value = (int(hi) << 64) | int(lo)
    v6 = ipaddress.IPv6Address(value)
    return v6.ipv4_mapped or v6


def gather_fixed(buffer: np.ndarray, starts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The ``dtype.itemsize`` bytes at each of ``starts`` in ``buffer``, viewed as a
    structured array of ``dtype`` (one compiled copy; the caller checked the bounds)."""
    from collector._gatherkernel import gather_rows

    out = np.empty((len(starts), dtype.itemsize), np.uint8)
    gather_rows(buffer, np.ascontiguousarray(starts, dtype=np.int64), out)
    return out.view(dtype).reshape(-1)


# Beyond this many distinct exporters in one batch, sorting beats the linear scan.
SCAN_DISTINCT_MAX = 64


def unique_addresses(addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (hi, lo) address rows in sorted order and, per input row, the index of
    its distinct row (what ``np.unique(axis=0, return_inverse=True)`` gives).

    A compiled scan numbers the addresses in order of first appearance (batches come from
    a few exporters); only the distinct rows are then sorted. ``np.unique(axis=0)`` sorts
    every row as a structured record (~5 ms for 10k datagrams): it is the fallback for a
    batch from more than SCAN_DISTINCT_MAX exporters.
    """
    if len(addresses) == 0:
        return addresses.reshape(0, 2), np.zeros(0, np.int64)
    from collector._addresskernel import first_seen_codes

    hi = np.ascontiguousarray(addresses[:, 0], dtype=np.uint64)
    lo = np.ascontiguousarray(addresses[:, 1], dtype=np.uint64)
    codes = np.empty(len(addresses), np.int64)
    seen = np.empty((2, SCAN_DISTINCT_MAX), np.uint64)
    distinct = first_seen_codes(hi, lo, codes, seen[0], seen[1])
    if distinct < 0:
        uniques, inverse = np.unique(addresses, axis=0, return_inverse=True)
        return uniques, inverse.reshape(-1)
    seen_hi, seen_lo = seen[0, :distinct], seen[1, :distinct]
    order = np.lexsort((seen_lo, seen_hi))
    rank = np.empty(distinct, np.int64)
    rank[order] = np.arange(distinct)
    uniques = np.empty((distinct, 2), dtype=addresses.dtype)
    uniques[:, 0] = seen_hi[order]
    uniques[:, 1] = seen_lo[order]
    return uniques, rank[codes]
