"""The in-place v5 pass equals the general path (FlowBatch, then attribute) exactly.

Both run on the same datagrams, built to reach every branch of the kernel: flows that
end before they start, that span several bins or more than a day, rates that are unknown
or so large the counts saturate, an exporter with uplinks, records late by a year or
from before the first export's bin (left for the general path), several exporters.
Usage, notes, flow counters and the time range must all be equal.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_usage_accumulator import _as_dict

from accounting.attribution import attribute, count_by_bin
from accounting.attribution_v5 import attribute_v5_in_place, in_place_possible
from accounting.config import parse_config
from accounting.exporters import UplinkTable
from accounting.members import compile_registry
from accounting.usage import UsageAccumulator
from collector.datagrams import DatagramBatch
from collector.decode import Decoder
from collector.decode.netflow5 import HEADER_DTYPE, RECORD_DTYPE

BIN_MS = 300_000
EXPORT_S = 1_790_000_300  # 200 s into a 5-minute bin
UPTIME = 500_000_000


def _datagram(rng, *, records: int, first_age, last_age, sampling: int = 0) -> bytes:
    header = np.zeros(1, HEADER_DTYPE)
    header["version"], header["count"] = 5, records
    header["sys_uptime"], header["unix_secs"] = UPTIME, EXPORT_S
    header["unix_nsecs"] = 123_000_000
    header["sampling_interval"] = sampling
    rec = np.zeros(records, RECORD_DTYPE)
    members = np.array([0x0A000000, 0x0A010000, 0x0A020000, 0xC0A80000], np.uint32)
    outside = rng.integers(0x50000000, 0x60000000, records, dtype=np.uint32)
    inside = members[rng.integers(0, 4, records)] + rng.integers(0, 256, records, dtype=np.uint32)
    flip = rng.random(records) < 0.5
    rec["srcaddr"] = np.where(flip, inside, outside)
    rec["dstaddr"] = np.where(flip, outside, inside)
    rec["dstaddr"][::7] = inside[::7]  # internal
    rec["srcaddr"][::11] = outside[::11]  # unattributed
    rec["dstaddr"][::11] = outside[::11]
    rec["dOctets"] = rng.integers(40, 1 << 32, records, dtype=np.uint64)
    rec["dPkts"] = rng.integers(1, 1 << 32, records, dtype=np.uint64)
    rec["first"] = (UPTIME - np.asarray(first_age, np.int64)) & 0xFFFFFFFF
    rec["last"] = (UPTIME - np.asarray(last_age, np.int64)) & 0xFFFFFFFF
    rec["input"] = rng.integers(1, 4, records)
    rec["output"] = rng.integers(1, 4, records)
    return header.tobytes() + rec.tobytes()


def _batch(seed: int) -> DatagramBatch:
    rng = np.random.default_rng(seed)
    n = 30
    payloads, sources = [], []
    ages = [
        (rng.integers(1_000, 60_000, n), rng.integers(0, 1_000, n)),  # ordinary
        (rng.integers(0, 1_000, n), rng.integers(1_000, 60_000, n)),  # end before start
        (rng.integers(400_000, 2_000_000, n), rng.integers(0, 50_000, n)),  # several bins
        (np.full(n, 2_000_000_000), np.full(n, 1_000)),  # longer than a day, starts early
        (86_460_000 + np.arange(n) % 2, np.full(n, 60_000)),  # a day exactly, and a ms more
        (np.full(n, -30_000_000), np.full(n, -31_000_000)),  # from the future: left
        # at the edges of the export time's bin (200.123 s into it): a ms in, a ms out
        (200_123 + np.arange(n) % 2, -99_877 + np.arange(n) % 2),
    ]
    for k in range(24):
        first, last = ages[k % len(ages)]
        sampling = (0, 10, 0x3FFF, 1)[k % 4]
        payloads.append(
            _datagram(rng, records=n, first_age=first, last_age=last, sampling=sampling)
        )
        sources.append(("192.0.2.1", "192.0.2.2", "192.0.2.3")[k % 3])
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
internal_prefixes = ["192.168.0.0/16"]
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


@pytest.mark.parametrize("rates", ["header", "unknown", "huge"])
@pytest.mark.parametrize("warm", [False, True])
def test_in_place_equals_the_general_path(rates, warm):
    table = _table()
    batch = _batch(seed=len(rates) + warm)
    decoded = Decoder().decode(batch, v5_in_place=True)
    v5 = decoded.v5
    assert v5 is not None and len(decoded.flows) == 0
    if rates != "header":
        rate = 0 if rates == "unknown" else (1 << 32) - 1
        v5 = type(v5)(v5.records, v5.exporter_index, np.full_like(v5.rate, rate))
    uplinks = _uplinks(len(decoded.exporters))
    assert in_place_possible(table, decoded.exporters)

    # General path: every record through a FlowBatch.
    general, general_notes = UsageAccumulator(BIN_MS), Counter()
    flows = v5.to_flow_batch(general_notes)
    general.add(
        attribute(flows, table, bin_ms=BIN_MS, notes=general_notes, uplinks=uplinks, into=general)
    )
    general_counts = count_by_bin(flows.flow_start_milliseconds, flows.exporter_index, BIN_MS)

    # In place, then what it left through the general path.
    in_place, notes = UsageAccumulator(BIN_MS), Counter()
    if warm:  # a running cube already covering a week of bins
        in_place.cube_for(EXPORT_S * 1000 // BIN_MS - 2016, EXPORT_S * 1000 // BIN_MS, table.rows)
    done = attribute_v5_in_place(
        v5, table, bin_ms=BIN_MS, notes=notes, uplinks=uplinks, into=in_place, n_exporters=3
    )
    counts = Counter({(b, e): c for b, e, c in done.flow_counts})
    first, last = [done.first_ms], [done.last_ms]
    assert done.left is not None and 0 < len(done.left) < len(v5)
    rest = done.left.to_flow_batch(notes)
    in_place.add(attribute(rest, table, bin_ms=BIN_MS, notes=notes, uplinks=uplinks, into=in_place))
    counts.update(
        {
            (b, e): c
            for b, e, c in count_by_bin(rest.flow_start_milliseconds, rest.exporter_index, BIN_MS)
        }
    )
    first.append(int(rest.flow_start_milliseconds.min()))
    last.append(int(rest.flow_end_milliseconds.max()))

    assert _as_dict(in_place.rows()) == _as_dict(general.rows())
    assert notes == general_notes
    assert counts == Counter({(b, e): c for b, e, c in general_counts})
    assert min(first) == int(flows.flow_start_milliseconds.min())
    assert max(last) == int(flows.flow_end_milliseconds.max())
    expected = {
        "header": {"v5_end_before_start", "flow_span_clamped"},
        "unknown": {"v5_end_before_start", "flow_span_clamped", "sampling_rate_unknown"},
        "huge": {"v5_end_before_start", "flow_span_clamped", "count_overflow_saturated"},
    }[rates]
    assert set(notes) == expected
    # Uplinks applied: exporter 1's flows crossing neither 1 nor 3 are not billed.
    assert any(o == table.size + 2 for _, o, _ in _as_dict(in_place.rows()))


def test_not_possible_with_several_epochs_or_interface_rules():
    exporters = Decoder().decode(_batch(seed=1)).exporters
    assert in_place_possible(_table(), exporters)
    rule = 'interfaces = [{ exporter = "192.0.2.2", ifindex = 42 }]\n'
    assert not in_place_possible(_table(rule), exporters)
    moved = '["10.2.0.0/16", { prefix = "10.3.0.0/16", valid_from = 2026-11-10 }]'
    config = parse_config(CONFIG.replace('["10.2.0.0/16"]', moved))
    two_epochs = compile_registry(config.registry, config.billing.timezone)
    assert two_epochs.epochs == 2 and not in_place_possible(two_epochs, exporters)
