"""Lookup tables copied into huge-page memory: same contents, aligned, and (where the
kernel offers transparent huge pages) actually backed by them."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from accounting import members as members_module
from accounting.hugepages import HUGE_PAGE, MIN_BYTES, in_huge_pages
from collector.synth.model import make_members
from tests.flow_builders import member_table
from tests.smaps import mapping_fields


def _thp_mode() -> str | None:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not path.exists():
        return None
    text = path.read_text()
    return text[text.index("[") + 1 : text.index("]")]


def test_large_tables_are_copied_aligned_and_equal():
    table = np.arange(3 * MIN_BYTES // 2, dtype=np.int16).reshape(-1, 256)
    moved = in_huge_pages(table)
    assert moved is not table
    assert moved.ctypes.data % HUGE_PAGE == 0
    assert moved.dtype == table.dtype and moved.shape == table.shape
    assert moved.flags.c_contiguous and moved.flags.writeable
    assert np.array_equal(moved, table)
    if _thp_mode() in ("always", "madvise"):
        assert (mapping_fields(moved.ctypes.data) or {}).get("AnonHugePages", 0) >= HUGE_PAGE
    else:
        pytest.skip(f"transparent huge pages are {_thp_mode()!r} here: alignment checked only")


def test_small_tables_stay_where_they_are():
    table = np.zeros((4, 256), np.int16)
    assert in_huge_pages(table) is table


def test_member_tables_use_them_and_look_up_the_same(monkeypatch):
    """1,000 members of 9 prefixes, the live benchmark's registry with its /26s narrowed
    to /28s (each then needs a third trie level: 1.2 MB of chunks; the /26s themselves
    end at the second level, in 51 KB): the chunks move to huge pages, and every address
    looks up as in a table left in ordinary memory."""
    synth = [
        replace(m, prefixes=tuple(p.replace("/26", "/28") for p in m.prefixes))
        for m in make_members(1000, extra_v4_per_member=8, ipv6=False)
    ]
    table = member_table(synth)
    assert table.v4_chunks.nbytes >= MIN_BYTES
    assert table.v4_chunks.ctypes.data % HUGE_PAGE == 0
    monkeypatch.setattr(members_module, "in_huge_pages", lambda array: array)
    plain = member_table(synth)
    assert np.array_equal(plain.v4_chunks, table.v4_chunks)
    rng = np.random.default_rng(4)
    inside = [int(ipaddress.ip_network(p).network_address) + 5 for m in synth for p in m.prefixes]
    assert all(table.trie.v4.lookup(a) >= 0 for a in inside)
    for address in [*inside, *rng.integers(0, 2**32, 2000).tolist()]:
        assert table.trie.v4.lookup(address) == plain.trie.v4.lookup(address)
