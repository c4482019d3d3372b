"""The member registry compiled for the kernels: member rows, and per epoch the tables
that map traffic onto them.

An *epoch* is a stretch of time during which no rule starts or ends: the registry's
validity dates (local midnights in the billing time zone) cut time into epochs, and each
epoch gets its own prefix tries and interface/VLAN tables. A flow's bytes in a bin are
attributed with the rules of that bin's epoch. Member rows are the same in every epoch
(row i is ``ids[i]``); row M (= number of members) is internal traffic, M+1 unattributed,
M+2 not crossing an uplink.

Lookup values: 0..M-1 a member, M an internal (infrastructure) prefix, -1 nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from accounting.hugepages import in_huge_pages
from accounting.lpm import UNIT, DualTrie, PrefixTrie, build_trie
from accounting.registry import MemberConfig, PrefixRule, Registry, Validity
from collector.datagrams import address_to_pair

INTERNAL = "internal"
UNATTRIBUTED = "unattributed"
NOT_UPLINK = "not_uplink"
INT64_MIN = np.iinfo(np.int64).min
EPOCH_SHIFT = 48  # key = epoch << 48 | exporter slot << 32 | ifIndex (or VLAN)
SLOT_SHIFT = 32


@dataclass(frozen=True)
class MemberTable:
    """Member rows and, for each epoch, the rule tables the kernels read."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    epoch_start_ms: np.ndarray  # int64[E]: epoch e starts here (epoch 0 at INT64_MIN)
    v4_roots: np.ndarray  # [E, 65536]
    v4_chunks: np.ndarray  # [units * 64] (accounting/lpm.py), shared by every epoch's root
    v6_roots: np.ndarray
    v6_chunks: np.ndarray
    port_keys: np.ndarray  # int64[P] sorted; epoch, exporter slot, ifIndex
    port_rows: np.ndarray  # int64[P]
    vlan_keys: np.ndarray  # int64[V] sorted; epoch, exporter slot, VLAN id
    vlan_rows: np.ndarray  # int64[V]
    exporter_slots: dict[tuple[int, int], int]  # exporter address pair -> slot

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def rows(self) -> int:
        """Owner rows of the usage cube: members, internal, unattributed, not_uplink."""
        return len(self.ids) + 3

    @property
    def epochs(self) -> int:
        return len(self.epoch_start_ms)

    def owner_label(self, row: int) -> tuple[str, str]:
        """(bucket, member id) of an owner row: ('member', id), ('internal', ''), ..."""
        if row < self.size:
            return "member", self.ids[row]
        if row == self.size:
            return INTERNAL, ""
        if row == self.size + 1:
            return UNATTRIBUTED, ""
        return NOT_UPLINK, ""

    def epoch_at(self, when_ms: int) -> int:
        return int(np.searchsorted(self.epoch_start_ms, when_ms, side="right")) - 1

    @property
    def trie(self) -> DualTrie:
        """The prefix tries of the first epoch (a convenience for single-epoch tables)."""
        return self.trie_at(0)

    def trie_at(self, epoch: int) -> DualTrie:
        return DualTrie(
            PrefixTrie(32, self.v4_roots[epoch], self.v4_chunks),
            PrefixTrie(128, self.v6_roots[epoch], self.v6_chunks),
        )

    def slots_of(self, exporters: np.ndarray) -> np.ndarray:
        """Exporter slot of each (hi, lo) address of a batch's exporter list (-1: none)."""
        out = np.full(max(len(exporters), 1), -1, np.int64)
        for i, (hi, lo) in enumerate(exporters.tolist()):
            out[i] = self.exporter_slots.get((int(hi), int(lo)), -1)
        return out


def compile_members(
    members: Sequence[MemberConfig],
    *,
    internal: Sequence[PrefixRule] = (),
    timezone: str = "UTC",
) -> MemberTable:
    """Compile members (in row order) and internal prefixes into per-epoch tables."""
    members = list(members)
    zone = ZoneInfo(timezone)
    n = len(members)
    edges: set[dt.date] = set()
    for validity in _validities(members, internal):
        if validity.valid_from is not None:
            edges.add(validity.valid_from)
        if validity.valid_to is not None and validity.valid_to < dt.date.max:
            edges.add(validity.valid_to + dt.timedelta(days=1))
    days = sorted(edges)
    starts = [INT64_MIN] + [_midnight_ms(d, zone) for d in days]
    probe_days = [dt.date.min, *days]  # a day inside each epoch: its first

    slots: dict[tuple[int, int], int] = {}
    for m in members:
        for r in (*m.interface_rules, *m.vlan_rules):
            slots.setdefault(address_to_pair(r.exporter), len(slots))

    v4_tries, v6_tries, ports, vlans = [], [], [], []
    for e, day in enumerate(probe_days):
        nets: list[tuple[ipaddress._BaseNetwork, int]] = []
        for row, m in enumerate(members):
            if not m.validity.covers(day):
                continue
            nets += [(r.network, row) for r in m.prefix_rules if r.validity.covers(day)]
            for r in m.interface_rules:
                if r.validity.covers(day):
                    ports.append((_key(e, slots[address_to_pair(r.exporter)], r.ifindex), row))
            for r in m.vlan_rules:
                if r.validity.covers(day):
                    vlans.append((_key(e, slots[address_to_pair(r.exporter)], r.vlan), row))
        nets += [(r.network, n) for r in internal if r.validity.covers(day)]
        v4_tries.append(
            build_trie(
                32, [(int(x.network_address), x.prefixlen, v) for x, v in nets if x.version == 4]
            )
        )
        v6_tries.append(
            build_trie(
                128, [(int(x.network_address), x.prefixlen, v) for x, v in nets if x.version == 6]
            )
        )
    v4_roots, v4_chunks = _stack(v4_tries)
    v6_roots, v6_chunks = _stack(v6_tries)
    ports.sort()
    vlans.sort()
    return MemberTable(
        ids=tuple(m.id for m in members),
        names=tuple(m.name for m in members),
        epoch_start_ms=np.array(starts, dtype=np.int64),
        v4_roots=v4_roots,
        v4_chunks=v4_chunks,
        v6_roots=v6_roots,
        v6_chunks=v6_chunks,
        port_keys=np.array([k for k, _ in ports], dtype=np.int64),
        port_rows=np.array([r for _, r in ports], dtype=np.int64),
        vlan_keys=np.array([k for k, _ in vlans], dtype=np.int64),
        vlan_rows=np.array([r for _, r in vlans], dtype=np.int64),
        exporter_slots=slots,
    )


def compile_registry(registry: Registry, timezone: str) -> MemberTable:
    return compile_members(registry.members, internal=registry.internal, timezone=timezone)


def _key(epoch: int, slot: int, number: int) -> int:
    return (epoch << EPOCH_SHIFT) | (slot << SLOT_SHIFT) | number


def _validities(members: Sequence[MemberConfig], internal: Sequence[PrefixRule]) -> list[Validity]:
    out = [r.validity for r in internal]
    for m in members:
        out.append(m.validity)
        out += [r.validity for r in (*m.prefix_rules, *m.interface_rules, *m.vlan_rules)]
    return out


def _midnight_ms(day: dt.date, zone: ZoneInfo) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()) * 1000


def _stack(tries: list[PrefixTrie]) -> tuple[np.ndarray, np.ndarray]:
    """One root per epoch over one shared chunk array (chunk pointers renumbered)."""
    roots, chunks = [], []
    offset = 0
    for t in tries:
        root = t.root.astype(np.int64)
        table = t.chunks.astype(np.int64)
        # Pointers are -(chunk + 1), counted in rows (IPv6) or in units of UNIT entries
        # (IPv4, a flat array): shift them past the chunks of the earlier epochs.
        roots.append(np.where(root < 0, root - offset, root))
        chunks.append(np.where(table < 0, table - offset, table))
        offset += len(table) if table.ndim == 2 else len(table) // UNIT
    root_all = np.stack(roots)
    chunk_all = np.concatenate(chunks)
    widest = max(int(np.abs(root_all).max()), int(np.abs(chunk_all).max()))
    dtype = np.int16 if widest <= np.iinfo(np.int16).max else np.int32
    return in_huge_pages(root_all.astype(dtype)), in_huge_pages(chunk_all.astype(dtype))
