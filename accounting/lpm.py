"""Longest-prefix-match tables: multibit tries laid out as flat integer arrays.

Both families start with a ``root`` of 65,536 entries indexed by the address's top 16
bits. An entry ``v >= 0`` is a leaf: 0 = no prefix covers the address, ``v`` = value
``v - 1``. An entry ``v < 0`` points to a chunk of the next level. Prefixes are expanded
into every entry they cover (leaf pushing), inserted shortest first so that longer ones
overwrite, which makes a lookup a walk with no backtracking.

- IPv4: then 10 bits, then 6 (16-10-6), in one 1-D ``chunks`` array counted in units of
  64 entries: a pointer -(u + 1) starts at entry 64 u; a second-level chunk is 16 units
  (1,024 entries), a third-level one 1 unit. Units 0-15 are zeros, the padding a
  branch-free lookup reads under a leaf. Prefixes up to /26 end by the second level, and
  a third-level chunk is 128 bytes (int16): the live benchmark's 10,000 prefixes (/22 and
  /26) take 51 KB of chunks, against 1.5 MB in 8-bit strides, and the in-place kernel
  went from 52-62 to 41-46 ns per flow (its trie reads were a fifth of its time).
- IPv6: ``chunks`` of shape [k, 256], each indexed by the next 8 bits (at most 15 reads;
  row 0 is padding).

Only numpy here: building runs once per configuration; the lookups are in kernels.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

ROOT_BITS = 16
STRIDE = 8  # IPv6 levels below the root
V4_MID_BITS = 10  # IPv4: the second level, then V4_LOW_BITS
V4_LOW_BITS = 6
UNIT = 1 << V4_LOW_BITS  # entries per unit of the IPv4 chunk array
MID_UNITS = (1 << V4_MID_BITS) // UNIT
NO_MATCH = -1


@dataclass(frozen=True, slots=True)
class PrefixTrie:
    """A compiled trie for one address family (``bits`` = 32 or 128)."""

    bits: int
    root: np.ndarray  # int16 or int32 [65536]: int16 whenever every entry fits
    chunks: np.ndarray  # same dtype; IPv4: [units * 64], IPv6: [k, 256] (see above)

    @property
    def nbytes(self) -> int:
        return self.root.nbytes + self.chunks.nbytes

    def lookup(self, address: int) -> int:
        """Slow scalar lookup (tests, CLI): the value of the longest prefix, or -1."""
        if self.bits == 32:
            v = int(self.root[address >> ROOT_BITS])
            if v < 0:
                v = int(self.chunks[(-v - 1) * UNIT + ((address >> V4_LOW_BITS) & 0x3FF)])
            if v < 0:
                v = int(self.chunks[(-v - 1) * UNIT + (address & (UNIT - 1))])
            return v - 1
        shift = self.bits - ROOT_BITS
        v = int(self.root[address >> shift])
        while v < 0:
            shift -= STRIDE
            v = int(self.chunks[-v - 1, (address >> shift) & 0xFF])
        return v - 1


def build_trie(bits: int, prefixes: list[tuple[int, int, int]]) -> PrefixTrie:
    """Compile ``(network_int, length, value)`` triples into a :class:`PrefixTrie`.

    Values must be >= 0. Two entries for the same (network, length) are a caller error
    (configuration validation rejects them before this runs).
    """
    if bits not in (32, 128):
        raise ValueError("bits must be 32 or 128")
    for _, length, value in prefixes:
        if value < 0:
            raise ValueError("trie values must be >= 0")
        if not 0 <= length <= bits:
            raise ValueError(f"prefix length {length} out of range for {bits}-bit addresses")
    ordered = sorted(prefixes, key=lambda p: p[1])
    root = np.zeros(1 << ROOT_BITS, dtype=np.int32)
    table = _build_v4(root, ordered) if bits == 32 else _build_v6(root, ordered)
    # Narrow entries shrink the trie's cache footprint; lookups are memory-latency bound.
    if max(int(np.abs(root).max()), int(np.abs(table).max())) <= np.iinfo(np.int16).max:
        root, table = root.astype(np.int16), table.astype(np.int16)
    return PrefixTrie(bits, root, table)


def _build_v4(root: np.ndarray, ordered: list[tuple[int, int, int]]) -> np.ndarray:
    """The 16-10-6 levels of IPv4 (``root`` filled in place); returns the chunk array."""
    at_unit: dict[int, np.ndarray] = {0: np.zeros(MID_UNITS * UNIT, dtype=np.int32)}
    units = MID_UNITS  # units 0.. are the padding read under leaves

    def below(table: np.ndarray, index: int, size: int) -> np.ndarray:
        """The chunk ``table[index]`` points to; a leaf there first becomes a chunk of
        ``size`` units that inherits it."""
        nonlocal units
        entry = int(table[index])
        if entry >= 0:
            at_unit[units] = np.full(size * UNIT, entry, dtype=np.int32)
            table[index] = -units - 1
            units += size
        return at_unit[-int(table[index]) - 1]

    for network, length, value in ordered:
        leaf = value + 1
        first = network >> ROOT_BITS
        if length <= ROOT_BITS:
            root[first : first + (1 << (ROOT_BITS - length))] = leaf
            continue
        mid = below(root, first, MID_UNITS)
        index = (network >> V4_LOW_BITS) & 0x3FF
        if length <= ROOT_BITS + V4_MID_BITS:
            mid[index : index + (1 << (ROOT_BITS + V4_MID_BITS - length))] = leaf
            continue
        low = below(mid, index, 1)
        index = network & (UNIT - 1)
        low[index : index + (1 << (32 - length))] = leaf
    return np.concatenate([at_unit[u] for u in sorted(at_unit)])


def _build_v6(root: np.ndarray, ordered: list[tuple[int, int, int]]) -> np.ndarray:
    """8-bit levels below the root (``root`` filled in place); returns the [k, 256] chunks."""
    bits = 128
    chunks: list[np.ndarray] = [np.zeros(256, dtype=np.int32)]  # index 0 is never used
    for network, length, value in ordered:
        leaf = value + 1
        if length <= ROOT_BITS:
            first = network >> (bits - ROOT_BITS)
            root[first : first + (1 << (ROOT_BITS - length))] = leaf
            continue
        table = root
        index = network >> (bits - ROOT_BITS)
        consumed = ROOT_BITS
        while True:
            remaining = length - consumed
            if remaining <= 0:
                break
            entry = int(table[index])
            if entry >= 0:  # turn the leaf into a chunk that inherits it
                chunks.append(np.full(256, entry, dtype=np.int32))
                table[index] = -(len(chunks) - 1) - 1
                entry = int(table[index])
            table = chunks[-entry - 1]
            shift = bits - consumed - STRIDE
            index = (network >> shift) & 0xFF
            consumed += STRIDE
            if remaining <= STRIDE:
                span = 1 << (STRIDE - remaining)
                table[index : index + span] = leaf
                break
    return np.stack(chunks)


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A strict network (host bits must be zero), as configuration requires."""
    return ipaddress.ip_network(text, strict=True)


@dataclass(frozen=True, slots=True)
class DualTrie:
    """The IPv4 and IPv6 tries of one rule set."""

    v4: PrefixTrie
    v6: PrefixTrie

    @classmethod
    def from_networks(
        cls, networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]]
    ) -> DualTrie:
        v4 = [(int(n.network_address), n.prefixlen, v) for n, v in networks if n.version == 4]
        v6 = [(int(n.network_address), n.prefixlen, v) for n, v in networks if n.version == 6]
        return cls(build_trie(32, v4), build_trie(128, v6))

    def lookup(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
        addr = ipaddress.ip_address(address) if isinstance(address, str) else address
        if addr.version == 4:
            return self.v4.lookup(int(addr))
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return self.v4.lookup(int(mapped))
        return self.v6.lookup(int(addr))

    @property
    def nbytes(self) -> int:
        return self.v4.nbytes + self.v6.nbytes
