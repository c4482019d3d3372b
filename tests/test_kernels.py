"""The numba kernels against the slow references of tests/reference.py, on generated inputs."""

from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np
import reference
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accounting import kernels
from accounting.attribution import (
    MAX_FLOW_SPAN_MS,
    Attributed,
    bin_usage,
    bounded_times,
    classify_flows,
    count_by_bin,
    scaled_counts,
)
from accounting.lpm import DualTrie, build_trie
from accounting.members import compile_members
from accounting.registry import MemberConfig
from collector.batch import FlowBatch

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def v4_networks(draw, max_size=40):
    """Random IPv4 prefixes of any length, nested and overlapping, distinct, with values."""
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), min_size=0, max_size=max_size
        )
    )
    nets = {}
    for addr, length in raw:
        net = ipaddress.IPv4Network((addr, length), strict=False)
        nets.setdefault(net, len(nets))
    return list(nets.items())


@st.composite
def v6_networks(draw, max_size=30):
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)),
            min_size=0,
            max_size=max_size,
        )
    )
    nets = {}
    for addr, length in raw:
        net = ipaddress.IPv6Network((addr, length), strict=False)
        nets.setdefault(net, len(nets))
    return list(nets.items())


def _probe_addresses(networks, bits, draw_ints):
    """Addresses inside, at the edges of, and outside the networks."""
    probes = list(draw_ints)
    for net, _ in networks:
        probes += [int(net.network_address), int(net.broadcast_address)]
        if int(net.network_address) > 0:
            probes.append(int(net.network_address) - 1)
        if int(net.broadcast_address) < 2**bits - 1:
            probes.append(int(net.broadcast_address) + 1)
    return probes


@SETTINGS
@given(v4_networks(), st.lists(st.integers(0, 2**32 - 1), max_size=50))
def test_ipv4_trie_matches_reference(networks, extra):
    trie = build_trie(32, [(int(n.network_address), n.prefixlen, v) for n, v in networks])
    for a in _probe_addresses(networks, 32, extra):
        assert trie.lookup(a) == reference.lpm(networks, ipaddress.IPv4Address(a)), hex(a)


@st.composite
def v4_networks_in_two_blocks(draw, max_size=40):
    """Prefixes of /8 to /32 inside 10.1.0.0/16 and 10.2.0.0/16, so that they nest at
    every level of the trie (16, 10 and 6 bits) and longer ones inherit shorter ones."""
    raw = draw(
        st.lists(
            st.tuples(st.integers(1, 2), st.integers(0, 2**16 - 1), st.integers(8, 32)),
            min_size=1,
            max_size=max_size,
        )
    )
    nets = {}
    for block, low, length in raw:
        net = ipaddress.IPv4Network((0x0A000000 | block << 16 | low, length), strict=False)
        nets.setdefault(net, len(nets))
    return list(nets.items())


@SETTINGS
@given(v4_networks_in_two_blocks(), st.lists(st.integers(0x0A010000, 0x0A02FFFF), max_size=80))
def test_ipv4_trie_matches_reference_for_nested_prefixes(networks, extra):
    trie = build_trie(32, [(int(n.network_address), n.prefixlen, v) for n, v in networks])
    for a in _probe_addresses(networks, 32, extra):
        assert trie.lookup(a) == reference.lpm(networks, ipaddress.IPv4Address(a)), hex(a)


@SETTINGS
@given(v6_networks(), st.lists(st.integers(0, 2**128 - 1), max_size=50))
def test_ipv6_trie_matches_reference(networks, extra):
    trie = build_trie(128, [(int(n.network_address), n.prefixlen, v) for n, v in networks])
    for a in _probe_addresses(networks, 128, [*extra, 0xFFFF_0A00_0001]):  # one IPv4-mapped
        want = reference.lpm(networks, ipaddress.IPv6Address(a), mapped_as_ipv4=False)
        assert trie.lookup(a) == want, hex(a)


def _members_from(networks):
    """Spread networks over a few members (value = member row)."""
    members = {}
    for net, value in networks:
        members.setdefault(value % 5, []).append(net)
    configs = [MemberConfig(f"m{i}", f"M{i}", tuple(members.get(i, ()))) for i in range(5)]
    return configs, [(net, value % 5) for net, value in networks]


@SETTINGS
@given(
    v4_networks(max_size=25),
    v6_networks(max_size=15),
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1)),
        min_size=1,
        max_size=80,
    ),
)
@example(  # IPv4-mapped ends: the IPv4 trie decides, not ::/0 (found by hypothesis)
    nets4=[(ipaddress.IPv4Network("10.0.0.0/8"), 1)],
    nets6=[(ipaddress.IPv6Network("::/0"), 0)],
    flows=[(True, 0, 0xFFFF_0000_0000), (True, 0xFFFF_0A01_0203, 1 << 100)],
)
def test_classify_kernel_matches_reference(nets4, nets6, flows):
    configs, owned = _members_from(nets4 + [(n, v + 1000) for n, v in nets6])
    table = compile_members(configs)
    n = len(flows)
    batch = FlowBatch.allocate(n, ipv6=True)
    srcs, dsts = [], []
    for i, (is_v6, a, b) in enumerate(flows):
        if is_v6:
            batch.ip_version[i] = 6
            batch.source_ipv6_address[i] = (a >> 64, a & (2**64 - 1))
            batch.destination_ipv6_address[i] = (b >> 64, b & (2**64 - 1))
            srcs.append(ipaddress.IPv6Address(a))
            dsts.append(ipaddress.IPv6Address(b))
        else:
            a32, b32 = a % 2**32, b % 2**32
            batch.ip_version[i] = 4
            batch.source_ipv4_address[i] = a32
            batch.destination_ipv4_address[i] = b32
            srcs.append(ipaddress.IPv4Address(a32))
            dsts.append(ipaddress.IPv4Address(b32))
    got = classify_flows(batch, table)
    for i in range(n):
        want = reference.classify(
            reference.lpm(owned, srcs[i]), reference.lpm(owned, dsts[i]), table.size
        )
        assert (int(got.owner[i]), int(got.direction[i])) == want


def test_ipv4_mapped_ipv6_addresses_use_the_ipv4_table():
    table = compile_members([MemberConfig("a", "A", (ipaddress.ip_network("10.1.0.0/16"),))])
    batch = FlowBatch.allocate(1, ipv6=True)
    batch.source_ipv6_address[0] = (0, 0xFFFF_0A01_0203)  # ::ffff:10.1.2.3
    batch.destination_ipv6_address[0] = (0x2A00 << 48, 1)
    got = classify_flows(batch, table)
    assert (int(got.owner[0]), int(got.direction[0])) == (0, reference.DIR_OUT)
    assert table.trie.lookup("::ffff:10.1.2.3") == 0


flow_strategy = st.tuples(
    st.integers(0, 6),  # owner row (5 members + internal + unattributed)
    st.integers(0, 2),  # direction
    st.integers(0, 2**40),  # bytes
    st.integers(0, 2**20),  # packets
    st.integers(1_700_000_000_000, 1_700_000_000_000 + 3 * 86_400_000),  # start
    st.one_of(
        st.integers(0, 0),
        st.integers(0, 2_000),
        st.integers(0, 3_600_000),
        st.integers(0, MAX_FLOW_SPAN_MS),
    ),  # duration
)


@SETTINGS
@given(
    st.lists(flow_strategy, min_size=1, max_size=60),
    st.sampled_from([60_000, 300_000, 3_600_000]),
)
def test_spread_kernel_matches_reference(flows, bin_ms):
    owner = np.array([f[0] for f in flows], np.int32)
    direction = np.array([f[1] for f in flows], np.int8)
    octets = np.array([f[2] for f in flows], np.int64)
    packets = np.array([f[3] for f in flows], np.int64)
    start = np.array([f[4] for f in flows], np.int64)
    end = start + np.array([f[5] for f in flows], np.int64)
    rows = bin_usage(
        Attributed(owner, direction), octets, packets, start, end, n_rows=7, bin_ms=bin_ms
    )
    got = {
        (int(b), int(o), int(d)): [int(x), int(p), int(f)]
        for b, o, d, x, p, f in zip(
            rows.bin_start_ms,
            rows.owner,
            rows.direction,
            rows.bytes,
            rows.packets,
            rows.flows,
            strict=True,
        )
    }
    want = reference.usage(
        [
            {
                "owner": f[0],
                "direction": f[1],
                "bytes": f[2],
                "packets": f[3],
                "start": f[4],
                "end": f[4] + f[5],
            }
            for f in flows
        ],
        7,
        bin_ms,
    )
    assert got == want
    assert int(rows.bytes.sum()) == int(octets.sum())
    assert int(rows.flows.sum()) == len(flows)


def test_spread_splits_a_flow_spanning_three_bins_exactly():
    # 1,000 bytes over 600 s starting 100 s into a bin: 200 s, 300 s, 100 s of it per bin.
    start = 1_700_000_100_000 - (1_700_000_100_000 % 300_000) + 100_000
    rows = bin_usage(
        Attributed(np.array([0], np.int32), np.array([0], np.int8)),
        np.array([1000], np.int64),
        np.array([7], np.int64),
        np.array([start], np.int64),
        np.array([start + 600_000], np.int64),
        n_rows=3,
        bin_ms=300_000,
    )
    assert rows.bytes.tolist() == [333, 500, 167]
    assert rows.packets.tolist() == [2, 3, 2]
    assert rows.flows.tolist() == [1, 0, 0]


def test_flows_far_apart_in_time_use_several_windows():
    # Two flows a year apart would need a huge dense cube: the wrapper splits them.
    bin_ms = 300_000
    start = np.array([0, 365 * 86_400_000, 5 * 365 * 86_400_000], np.int64)
    rows = bin_usage(
        Attributed(np.array([0, 1, 0], np.int32), np.array([0, 1, 2], np.int8)),
        np.array([10, 20, 30], np.int64),
        np.array([1, 2, 3], np.int64),
        start,
        start + 1_000,
        n_rows=2000,
        bin_ms=bin_ms,
    )
    assert sorted(zip(rows.bin_start_ms.tolist(), rows.bytes.tolist(), strict=True)) == [
        (0, 10),
        (365 * 86_400_000 // bin_ms * bin_ms, 20),
        (5 * 365 * 86_400_000 // bin_ms * bin_ms, 30),
    ]


def test_sampling_multiplies_counts_and_unknown_rates_are_noted():
    batch = FlowBatch.allocate(3)
    batch.octet_delta_count[:] = [100, 100, 100]
    batch.packet_delta_count[:] = [1, 2, 3]
    batch.sampling_interval[:] = [1, 1000, 0]
    notes = Counter()
    octets, packets = scaled_counts(batch, notes)
    assert octets.tolist() == [100, 100_000, 100]
    assert packets.tolist() == [1, 2000, 3]
    assert notes == {"sampling_rate_unknown": 1}


def test_absurd_counts_saturate_and_are_noted():
    batch = FlowBatch.allocate(1)
    batch.octet_delta_count[:] = [2**64 - 1]
    batch.packet_delta_count[:] = [1]
    batch.sampling_interval[:] = [1000]
    notes = Counter()
    octets, _ = scaled_counts(batch, notes)
    assert octets[0] > 0 and notes["count_overflow_saturated"] == 1


def test_overlong_flows_are_clamped_keeping_their_bytes():
    batch = FlowBatch.allocate(2)
    batch.flow_start_milliseconds[:] = [0, 0]
    batch.flow_end_milliseconds[:] = [1000, 10 * MAX_FLOW_SPAN_MS]
    notes = Counter()
    start, end = bounded_times(batch, notes)
    assert start.tolist() == [0, 9 * MAX_FLOW_SPAN_MS]
    assert end.tolist() == [1000, 10 * MAX_FLOW_SPAN_MS]
    assert notes == {"flow_span_clamped": 1}


def test_dual_trie_lookup_by_text():
    trie = DualTrie.from_networks(
        [
            (ipaddress.ip_network("10.0.0.0/8"), 0),
            (ipaddress.ip_network("10.1.0.0/16"), 1),
            (ipaddress.ip_network("2001:db8::/32"), 2),
        ]
    )
    assert trie.lookup("10.2.3.4") == 0
    assert trie.lookup("10.1.3.4") == 1
    assert trie.lookup("2001:db8::1") == 2
    assert trie.lookup("192.0.2.1") == -1


def test_simple_and_general_attribute_kernels_agree():
    """The fast kernel (one epoch, no interface/VLAN rules) and the general one give the
    same cube, with and without uplinks and IPv6 rows."""
    from accounting import kernels
    from accounting.attribution import _rules
    from accounting.exporters import UplinkTable
    from collector.synth.model import TrafficSpec, generate_flows, make_members

    members = make_members(30, ipv6=True)
    table = compile_members(
        [
            MemberConfig(m.id, m.name, tuple(ipaddress.ip_network(p) for p in m.prefixes))
            for m in members
        ]
    )
    f = generate_flows(members, TrafficSpec(seed=5, flows=20_000, ipv6_share=0.3, exporters=2))
    n = len(f.octets)
    octets = f.octets.astype(np.int64)
    packets = f.packets.astype(np.int64)
    lo = int(f.start_ms.min()) // 300_000
    bins = int(f.end_ms.max()) // 300_000 - lo + 1
    up_none = UplinkTable.none(2)
    up_some = UplinkTable(np.array([[1, -1], [-1, -1]], np.int64), np.array([1, 0], np.int64))
    for v4only in (False,):
        for up in (up_none, up_some):
            simple = np.zeros((bins, table.rows, 3, 3), np.int64)
            general = np.zeros_like(simple)
            common = (f.ip_version, f.src4, f.dst4, f.src6, f.dst6, _rules(table))
            kernels.attribute_simple(
                v4only,
                *common,
                np.int64(table.size),
                f.exporter,
                f.input_if.astype(np.uint32),
                f.output_if.astype(np.uint32),
                up.interfaces,
                up.count,
                octets,
                packets,
                f.start_ms,
                f.end_ms,
                np.int64(300_000),
                np.int64(lo),
                simple,
            )
            kernels.attribute(
                v4only,
                *common,
                table.epoch_start_ms // 300_000,
                np.int64(table.size),
                f.exporter,
                np.full(2, -1, np.int64),
                f.input_if.astype(np.uint32),
                f.output_if.astype(np.uint32),
                np.zeros(n, np.uint16),
                up.interfaces,
                up.count,
                octets,
                packets,
                f.start_ms,
                f.end_ms,
                np.arange(n, dtype=np.int64),
                np.int64(300_000),
                np.int64(lo),
                general,
            )
            assert (simple == general).all()
            assert int(simple[..., 0].sum()) == int(octets.sum())


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(-(10**12), 10**13), st.integers(0, 6)), min_size=0, max_size=300
    ),
    st.sampled_from([1, 60_000, 300_000]),
)
def test_count_by_bin_matches_a_counter(items, bin_ms):
    """Dense and sorted paths alike: every (bin, group) pair present, counted exactly."""
    times = np.array([t for t, _ in items], np.int64)
    groups = np.array([g for _, g in items], np.int32)
    expected = Counter(((t // bin_ms) * bin_ms, g) for t, g in items)
    got = count_by_bin(times, groups, bin_ms)
    assert {(b, g): c for b, g, c in got} == expected
    assert len(got) == len(expected)
    assert [(b, g) for b, g, _ in got] == sorted((b, g) for b, g, _ in got)


def test_count_by_bin_takes_the_sorted_path_for_times_spread_widely():
    times = np.array([0, 10**15, 10**15 + 1, 0], np.int64)
    groups = np.array([1, 1, 1, 0], np.int64)
    assert count_by_bin(times, groups, 1000) == [(0, 0, 1), (0, 1, 1), (10**15, 1, 2)]


@SETTINGS
@given(
    st.one_of(
        st.integers(-(2**63) + 1, 2**63 - 1),
        st.integers(-(2**53), 2**53),
        st.integers(0, 2**42).map(lambda k: k * 300_000 - 1),
    ),
    st.sampled_from([1, 7, 1000, 60_000, 300_000, 3_600_000, 2**40 + 3]),
)
def test_floor_bin_equals_integer_floor_division(t, bin_ms):
    """The kernels' bin number (a multiplication by 1 / bin_ms) is exact for every int64."""
    lo, hi, _ = kernels.bin_extent(np.array([t], np.int64), np.zeros(1, np.int32), np.int64(bin_ms))
    assert lo == hi == t // bin_ms


@SETTINGS
@given(
    v4_networks_in_two_blocks(),
    st.lists(st.integers(0x0A010000, 0x0A02FFFF), max_size=40),
    st.randoms(use_true_random=False),
)
def test_classify_kernel_matches_reference_for_nested_ipv4_prefixes(nets4, extra, rng):
    """Every trie level of the compiled lookup (16, 10 and 6 bits) against the reference:
    flows between the edges of the nested prefixes (first and last addresses, and their
    neighbours) and random addresses of their two blocks."""
    configs, owned = _members_from(nets4)
    table = compile_members(configs)
    probes = _probe_addresses(nets4, 32, extra)
    flows = [(rng.choice(probes), rng.choice(probes)) for _ in range(2 * len(probes))]
    batch = FlowBatch.allocate(len(flows))
    for i, (a, b) in enumerate(flows):
        batch.ip_version[i] = 4
        batch.source_ipv4_address[i] = a
        batch.destination_ipv4_address[i] = b
    got = classify_flows(batch, table)
    for i, (a, b) in enumerate(flows):
        want = reference.classify(
            reference.lpm(owned, ipaddress.IPv4Address(a)),
            reference.lpm(owned, ipaddress.IPv4Address(b)),
            table.size,
        )
        assert (int(got.owner[i]), int(got.direction[i])) == want
