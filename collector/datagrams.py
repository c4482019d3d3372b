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


def unique_addresses(addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (hi, lo) address rows and, per input row, the index of its distinct row.

    ``np.unique(axis=0)`` sorts the rows as structured records (slow: ~5 ms for 10k
    datagrams); when every row shares its high half (all IPv4, or one IPv6 /64) a 1-D
    unique of the low half gives the same answer in a tenth of the time.
    """
    if len(addresses) == 0:
        return addresses.reshape(0, 2), np.zeros(0, np.int64)
    hi = addresses[:, 0]
    if (hi == hi[0]).all():
        lo, inverse = np.unique(addresses[:, 1], return_inverse=True)
        uniques = np.empty((len(lo), 2), dtype=addresses.dtype)
        uniques[:, 0] = hi[0]
        uniques[:, 1] = lo
        return uniques, inverse.reshape(-1)
    uniques, inverse = np.unique(addresses, axis=0, return_inverse=True)
    return uniques, inverse.reshape(-1)
