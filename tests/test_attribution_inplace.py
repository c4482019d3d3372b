"""The in-place pass equals the general path (FlowBatch, then attribute) exactly.

Both run on the same datagrams of each layout the pass reads (NetFlow v5; IPFIX with
millisecond times; v9 with sysUpTime times), built to reach every branch of the kernel:
flows that end before they start, that span several bins or more than a day, that touch
the edges of their export time's bin, rates that are known, unknown or so large the
counts saturate, an exporter with uplinks, records from the future or from before the
first export's bin (left for the general path), several exporters. Usage, notes, flow
counters and the time range must all be equal.
"""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np
import pytest
from test_usage_accumulator import _as_dict

from accounting.attribution import attribute, count_by_bin
from accounting.attribution_inplace import attribute_in_place, in_place_possible
from accounting.config import parse_config
from accounting.exporters import UplinkTable
from accounting.members import compile_registry
from accounting.usage import UsageAccumulator
from collector.batch import FlowBatch
from collector.datagrams import DatagramBatch
from collector.decode import Decoder
from collector.decode.netflow5 import HEADER_DTYPE, RECORD_DTYPE
from collector.decode.sampling import SamplingPolicy

BIN_MS = 300_000
EXPORT_S = 1_790_000_300  # 200 s into a 5-minute bin
UPTIME = 500_000_000
EXPORTERS = ("192.0.2.1", "192.0.2.2", "192.0.2.3")
# .1: configured default rate 10; .2: overridden to a rate that saturates the counts;
# .3: its own (v5 header) rate, or none at all (v9/IPFIX: unknown).
POLICY = SamplingPolicy(overrides={"192.0.2.2": (1 << 32) - 1}, defaults={"192.0.2.1": 10})
IPFIX_FIELDS = [(8, 4), (12, 4), (1, 8), (2, 8), (10, 2), (14, 4), (152, 8), (153, 8), (4, 1)]
V9_FIELDS = [(8, 4), (12, 4), (1, 4), (2, 4), (10, 2), (14, 2), (22, 4), (21, 4)]


def _export_ms(protocol: str) -> int:
    return EXPORT_S * 1000 + (123 if protocol == "v5" else 0)


def _ends(rng, n: int):
    """Source and destination addresses: members, internal, unattributed, mixed; the
    prefixes longer than /26 (D's /28 and /32, the internal /29) need the trie's third
    level."""
    members = np.array([0x0A000000, 0x0A010000, 0x0A020000, 0xC0A80000], np.uint32)
    outside = rng.integers(0x50000000, 0x60000000, n, dtype=np.uint32)
    inside = members[rng.integers(0, 4, n)] + rng.integers(0, 256, n, dtype=np.uint32)
    flip = rng.random(n) < 0.5
    src = np.where(flip, inside, outside)
    dst = np.where(flip, outside, inside)
    dst[::7] = inside[::7]  # internal
    src[::11] = outside[::11]  # unattributed
    dst[::11] = outside[::11]
    return src, dst


def _records(protocol: str, rng, first_age, last_age, n: int) -> bytes:
    src, dst = _ends(rng, n)
    ingress, egress = rng.integers(1, 4, n), rng.integers(1, 4, n)
    first_age, last_age = np.asarray(first_age, np.int64), np.asarray(last_age, np.int64)
    if protocol == "v5":
        rec = np.zeros(n, RECORD_DTYPE)
        rec["srcaddr"], rec["dstaddr"], rec["input"], rec["output"] = src, dst, ingress, egress
        rec["dOctets"] = rng.integers(40, 1 << 32, n, dtype=np.uint64)
        rec["dPkts"] = rng.integers(1, 1 << 32, n, dtype=np.uint64)
        rec["first"] = (UPTIME - first_age) & 0xFFFFFFFF
        rec["last"] = (UPTIME - last_age) & 0xFFFFFFFF
        return rec.tobytes()
    fields = IPFIX_FIELDS if protocol == "ipfix" else V9_FIELDS
    dtype = np.dtype([(f"e{e}", f">u{length}") for e, length in fields])
    rec = np.zeros(n, dtype)
    rec["e8"], rec["e12"], rec["e10"], rec["e14"] = src, dst, ingress, egress
    wide = 1 << (40 if protocol == "ipfix" else 32)  # 64-bit counts in IPFIX
    rec["e1"] = rng.integers(40, wide, n, dtype=np.uint64)
    rec["e2"] = rng.integers(1, wide, n, dtype=np.uint64)
    if protocol == "ipfix":  # counts that overflow int64 even at a rate of 10
        rec["e1"][::5] = rng.integers(1 << 62, 1 << 63, len(rec[::5]), dtype=np.uint64)
    if protocol == "ipfix":
        rec["e152"] = _export_ms(protocol) - first_age
        rec["e153"] = _export_ms(protocol) - last_age
    else:
        rec["e22"] = (UPTIME - first_age) & 0xFFFFFFFF
        rec["e21"] = (UPTIME - last_age) & 0xFFFFFFFF
    return rec.tobytes()


def _template(protocol: str) -> bytes:
    fields = IPFIX_FIELDS if protocol == "ipfix" else V9_FIELDS
    body = struct.pack(">HH", 256, len(fields)) + b"".join(struct.pack(">HH", *f) for f in fields)
    return struct.pack(">HH", 2 if protocol == "ipfix" else 0, 4 + len(body)) + body


def _datagram(protocol: str, rng, first_age, last_age, sampling: int, seq: int) -> bytes:
    n = len(first_age)
    records = _records(protocol, rng, first_age, last_age, n)
    if protocol == "v5":
        header = np.zeros(1, HEADER_DTYPE)
        header["version"], header["count"] = 5, n
        header["sys_uptime"], header["unix_secs"] = UPTIME, EXPORT_S
        header["unix_nsecs"] = 123_000_000
        header["sampling_interval"] = sampling
        return header.tobytes() + records
    sets = _template(protocol) + struct.pack(">HH", 256, 4 + len(records)) + records
    if protocol == "ipfix":
        return struct.pack(">HHIII", 10, 16 + len(sets), EXPORT_S, seq, 1) + sets
    return struct.pack(">HHIIII", 9, n + 1, UPTIME, EXPORT_S, seq, 1) + sets


def _batch(protocol: str, seed: int) -> DatagramBatch:
    rng = np.random.default_rng(seed)
    n = 30
    here_from = _export_ms(protocol) // BIN_MS * BIN_MS
    into_bin = _export_ms(protocol) - here_from
    ages = [
        (rng.integers(1_000, 60_000, n), rng.integers(0, 1_000, n)),  # ordinary
        (rng.integers(0, 1_000, n), rng.integers(1_000, 60_000, n)),  # end before start
        (rng.integers(400_000, 2_000_000, n), rng.integers(0, 50_000, n)),  # several bins
        (np.full(n, 2_000_000_000), np.full(n, 1_000)),  # longer than a day, starts early
        (86_460_000 + np.arange(n) % 2, np.full(n, 60_000)),  # a day exactly, and a ms more
        (np.full(n, -30_000_000), np.full(n, -31_000_000)),  # from the future: left
        # at the edges of the export time's bin: a ms in, a ms out
        (into_bin + np.arange(n) % 2, into_bin - BIN_MS + np.arange(n) % 2),
    ]
    payloads = []
    for k in range(24):
        first, last = ages[k % len(ages)]
        sampling = (0, 10, 0x3FFF, 1)[k % 4]
        payloads.append(_datagram(protocol, rng, first, last, sampling, seq=k))
    sources = [EXPORTERS[k % 3] for k in range(len(payloads))]
    return DatagramBatch.from_payloads(payloads, sources, [EXPORT_S * 10**9] * len(payloads))


CONFIG = """
[contract]
monthly_eur = 100
[[exporters]]
address = "192.0.2.1"
[[exporters]]
address = "192.0.2.2"
[[exporters]]
address = "192.0.2.3"
[registry]
internal_prefixes = ["192.168.0.0/16", "10.2.0.64/26", "10.2.0.200/29"]
[[members]]
id = "a"
name = "A"
prefixes = ["10.0.0.0/16"]
[[members]]
id = "b"
name = "B"
prefixes = ["10.1.0.0/16", "10.2.0.0/24"]
[[members]]
id = "c"
name = "C"
prefixes = ["10.2.0.0/16"]
[[members]]
id = "d"
name = "D"
prefixes = ["10.0.0.128/25", "10.1.0.7/32", "10.1.0.48/28"]
"""


def _table(extra: str = ""):
    config = parse_config(CONFIG + extra)
    return compile_registry(config.registry, config.billing.timezone)


def _uplinks(n_exporters: int) -> UplinkTable:
    """Exporter 1 declares uplinks 1 and 3; the others none."""
    table = UplinkTable.none(n_exporters)
    interfaces = np.full((n_exporters, 2), -1, np.int64)
    interfaces[1] = (1, 3)
    count = table.count.copy()
    count[1] = 2
    return UplinkTable(interfaces, count)


def _general(batch: DatagramBatch, table, uplinks):
    """Every record through a FlowBatch and the general attribution."""
    decoded = Decoder(sampling=POLICY).decode(batch)
    usage, notes = UsageAccumulator(BIN_MS), Counter(decoded.notes)
    flows = decoded.flows
    usage.add(attribute(flows, table, bin_ms=BIN_MS, notes=notes, uplinks=uplinks, into=usage))
    counts = count_by_bin(flows.flow_start_milliseconds, flows.exporter_index, BIN_MS)
    return usage, notes, Counter({(b, e): c for b, e, c in counts}), flows


@pytest.mark.parametrize("protocol", ["v5", "ipfix", "v9"])
@pytest.mark.parametrize("warm", [False, True])
def test_in_place_equals_the_general_path(protocol, warm):
    table = _table()
    batch = _batch(protocol, seed=warm)
    decoded = Decoder(sampling=POLICY).decode(batch, in_place=True)
    assert len(decoded.flows) == 0 and len(decoded.in_place) >= 1
    uplinks = _uplinks(len(decoded.exporters))
    assert in_place_possible(table, decoded.exporters)
    general, general_notes, general_counts, flows = _general(batch, table, uplinks)

    # In place, then what it left through the general path.
    usage, notes = UsageAccumulator(BIN_MS), Counter(decoded.notes)
    if warm:  # a running cube already covering a week of bins
        usage.cube_for(EXPORT_S * 1000 // BIN_MS - 2016, EXPORT_S * 1000 // BIN_MS, table.rows)
    counts, first, last, left = Counter(), [], [], []
    for sets in decoded.in_place:
        done = attribute_in_place(
            sets, table, bin_ms=BIN_MS, notes=notes, uplinks=uplinks, into=usage, n_exporters=3
        )
        counts.update({(b, e): c for b, e, c in done.flow_counts})
        first.append(done.first_ms)
        last.append(done.last_ms)
        if done.left is not None:
            left.append(done.left)
    rest = FlowBatch.concat(left)
    assert 0 < len(rest) < len(flows)  # some records were left, most were not
    usage.add(attribute(rest, table, bin_ms=BIN_MS, notes=notes, uplinks=uplinks, into=usage))
    rest_counts = count_by_bin(rest.flow_start_milliseconds, rest.exporter_index, BIN_MS)
    counts.update({(b, e): c for b, e, c in rest_counts})
    first.append(int(rest.flow_start_milliseconds.min()))
    last.append(int(rest.flow_end_milliseconds.max()))

    assert _as_dict(usage.rows()) == _as_dict(general.rows())
    assert +notes == +general_notes
    assert counts == general_counts
    assert min(x for x in first if x is not None) == int(flows.flow_start_milliseconds.min())
    assert max(x for x in last if x is not None) == int(flows.flow_end_milliseconds.max())
    expected = {"flow_span_clamped", "count_overflow_saturated"}
    if protocol == "v5":
        expected |= {"v5_end_before_start"}
    else:
        expected |= {"end_before_start", "sampling_rate_unknown", "sampling_rate_not_exported"}
    assert expected <= set(notes)
    # Uplinks applied: exporter 1's flows crossing neither 1 nor 3 are not billed.
    assert any(o == table.size + 2 for _, o, _ in _as_dict(usage.rows()))


def test_other_layouts_keep_the_general_mapping():
    """Templates the pass cannot read (here IPv6, and per-record sampling) are mapped as
    before, and a batch mixing them with readable ones splits accordingly."""
    from collector.synth.ipfix import encode_ipfix
    from collector.synth.model import TrafficSpec, generate_flows, make_members
    from collector.synth.netflow9 import TemplatedExporter

    members = make_members(4, ipv6=True)
    flows = generate_flows(members, TrafficSpec(seed=3, flows=300, exporters=2, ipv6_share=0.5))
    routers = [
        TemplatedExporter("192.0.2.1", domain=1, time_mode="ms"),
        TemplatedExporter("192.0.2.2", domain=2, time_mode="ms", samplers=((7, 100),)),
    ]
    datagrams = encode_ipfix(flows, routers)
    batch = DatagramBatch.from_payloads(
        [d.payload for d in datagrams], [d.source for d in datagrams]
    )
    whole = Decoder().decode(batch)
    split = Decoder().decode(batch, in_place=True)
    assert split.flow_count == len(whole.flows)
    in_place = sum(len(sets) for sets in split.in_place)
    # Only router 1's IPv4 records are read in place.
    expected = int(((whole.flows.exporter_index == 0) & (whole.flows.ip_version == 4)).sum())
    assert in_place == expected > 0


def test_not_possible_with_several_epochs_or_interface_rules():
    exporters = Decoder().decode(_batch("v5", seed=1)).exporters
    assert in_place_possible(_table(), exporters)
    rule = 'interfaces = [{ exporter = "192.0.2.2", ifindex = 42 }]\n'
    assert not in_place_possible(_table(rule), exporters)
    moved = '["10.2.0.0/16", { prefix = "10.3.0.0/16", valid_from = 2026-11-10 }]'
    config = parse_config(CONFIG.replace('["10.2.0.0/16"]', moved))
    two_epochs = compile_registry(config.registry, config.billing.timezone)
    assert two_epochs.epochs == 2 and not in_place_possible(two_epochs, exporters)
