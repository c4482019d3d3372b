"""The member registry compiled for the kernels: ids in row order and their prefix tries."""

from __future__ import annotations

from dataclasses import dataclass

from accounting.lpm import DualTrie
from accounting.registry import MemberConfig

INTERNAL = "internal"
UNATTRIBUTED = "unattributed"
NOT_UPLINK = "not_uplink"


@dataclass(frozen=True, slots=True)
class MemberTable:
    """Members in a fixed row order (row i <-> ``ids[i]``) and the LPM tries onto those rows.

    The kernels add three rows after the members: ``size`` for internal traffic,
    ``size + 1`` for unattributed traffic and ``size + 2`` for flows that cross none of
    their exporter's declared uplinks (seen by a router but not billed there).
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]
    trie: DualTrie

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def rows(self) -> int:
        """Owner rows of the usage cube: members, internal, unattributed, not_uplink."""
        return len(self.ids) + 3

    def owner_label(self, row: int) -> tuple[str, str]:
        """(bucket, member id) of an owner row: ('member', id), ('internal', ''), ..."""
        if row < self.size:
            return "member", self.ids[row]
        if row == self.size:
            return INTERNAL, ""
        if row == self.size + 1:
            return UNATTRIBUTED, ""
        return NOT_UPLINK, ""


def compile_members(members: tuple[MemberConfig, ...] | list[MemberConfig]) -> MemberTable:
    """Row order is the configuration's order; every prefix points at its member's row."""
    networks = [(net, row) for row, m in enumerate(members) for net in m.prefixes]
    return MemberTable(
        ids=tuple(m.id for m in members),
        names=tuple(m.name for m in members),
        trie=DualTrie.from_networks(networks),
    )
