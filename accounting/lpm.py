"""Longest-prefix-match tables: a multibit trie laid out as two int32 arrays.

Layout (same for IPv4 and IPv6, only the depth differs):
- ``root``: 65,536 entries indexed by the address's top 16 bits;
- ``chunks``: k rows of 256 entries, each indexed by the next 8 bits.
An entry ``v >= 0`` is a leaf: 0 = no prefix covers the address, ``v`` = value ``v - 1``.
An entry ``v < 0`` points to chunk ``-v - 1``. Prefixes are expanded into every entry
they cover (leaf pushing), inserted shortest first so that longer ones overwrite, which
makes lookup a walk of at most 3 (IPv4) or 15 (IPv6) array reads with no backtracking.

Only numpy here: building runs once per configuration; the lookups are in kernels.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

ROOT_BITS = 16
STRIDE = 8
NO_MATCH = -1


@dataclass(frozen=True, slots=True)
class PrefixTrie:
    """A compiled trie for one address family (``bits`` = 32 or 128)."""

    bits: int
    root: np.ndarray  # int16 or int32 [65536]: int16 whenever every entry fits
    chunks: (
        np.ndarray
    )  # same dtype, [k, 256] (k >= 1; row 0: padding the lookups read under a leaf)

    @property
    def nbytes(self) -> int:
        return self.root.nbytes + self.chunks.nbytes

    def lookup(self, address: int) -> int:
        """Slow scalar lookup (tests, CLI): the value of the longest prefix, or -1."""
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
    root = np.zeros(1 << ROOT_BITS, dtype=np.int32)
    chunks: list[np.ndarray] = [np.zeros(256, dtype=np.int32)]  # index 0 is never used
    for network, length, value in sorted(prefixes, key=lambda p: p[1]):
        if value < 0:
            raise ValueError("trie values must be >= 0")
        if not 0 <= length <= bits:
            raise ValueError(f"prefix length {length} out of range for {bits}-bit addresses")
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
    table = np.stack(chunks)
    # Narrow entries halve the trie's cache footprint; lookups are memory-latency bound.
    if max(int(np.abs(root).max()), int(np.abs(table).max())) <= np.iinfo(np.int16).max:
        root, table = root.astype(np.int16), table.astype(np.int16)
    return PrefixTrie(bits, root, table)


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
