"""NetFlow v5 decoding: header times and uptime wrap, sampling, and bad datagrams."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.datagrams import DatagramBatch
from collector.decode import Decoder
from collector.decode.netflow5 import HEADER_DTYPE, RECORD_DTYPE
from collector.synth.model import SynthFlows
from collector.synth.netflow5 import V5Exporter, encode_v5


def v5_datagram(
    records: int = 2,
    *,
    count: int | None = None,
    uptime: int = 100_000,
    secs: int = 1_790_000_000,
    nsecs: int = 250_000_000,
    first: int = 90_000,
    last: int = 95_000,
    sampling: int = 0,
    octets: int = 1000,
) -> bytes:
    header = np.zeros(1, HEADER_DTYPE)
    header["version"] = 5
    header["count"] = records if count is None else count
    header["sys_uptime"] = uptime
    header["unix_secs"] = secs
    header["unix_nsecs"] = nsecs
    header["sampling_interval"] = sampling
    rec = np.zeros(records, RECORD_DTYPE)
    rec["srcaddr"] = 0x0A000001
    rec["dstaddr"] = 0x08080808
    rec["dOctets"] = octets
    rec["dPkts"] = 3
    rec["first"] = first
    rec["last"] = last
    rec["input"] = 7
    rec["output"] = 9
    return header.tobytes() + rec.tobytes()


def decode(payloads: list[bytes]):
    return Decoder().decode(DatagramBatch.from_payloads(payloads))


def test_times_come_from_the_header():
    r = decode([v5_datagram()])
    export_ms = 1_790_000_000_000 + 250
    assert r.flows.flow_start_milliseconds.tolist() == [export_ms - 10_000] * 2
    assert r.flows.flow_end_milliseconds.tolist() == [export_ms - 5_000] * 2
    assert r.flows.ingress_interface.tolist() == [7, 7]
    assert r.flows.egress_interface.tolist() == [9, 9]
    assert r.first_export_ms == r.last_export_ms == export_ms


def test_uptime_wrap_around():
    # The router's uptime wrapped 2 s ago; the flow started 10 s ago (before the wrap).
    uptime = 2_000
    first = (uptime - 10_000) % 2**32
    last = (uptime - 1_000) % 2**32
    r = decode([v5_datagram(uptime=uptime, first=first, last=last)])
    export_ms = 1_790_000_000_250
    assert r.flows.flow_start_milliseconds.tolist()[0] == export_ms - 10_000
    assert r.flows.flow_end_milliseconds.tolist()[0] == export_ms - 1_000
    assert not r.notes


def test_sampling_interval_low_14_bits():
    r = decode(
        [
            v5_datagram(sampling=(1 << 14) | 1000),
            v5_datagram(sampling=0),
            v5_datagram(sampling=(2 << 14) | 64),
        ]
    )
    assert sorted(set(r.flows.sampling_interval.tolist())) == [1, 64, 1000]


def test_end_before_start_is_kept_and_noted():
    r = decode([v5_datagram(first=95_000, last=90_000)])
    assert len(r.flows) == 2
    assert (r.flows.flow_start_milliseconds == r.flows.flow_end_milliseconds).all()
    assert r.notes == {"v5_end_before_start": 2}


def test_bad_datagrams_are_counted_and_good_ones_decoded():
    good = v5_datagram(3)
    payloads = [
        good,
        good[:-10],  # truncated: the header promises 3 records
        v5_datagram(0),  # count 0
        v5_datagram(31, count=31),  # more than 30 records
        v5_datagram(2, count=3),  # header promises more records than sent
        b"\x00\x07" + good[2:],  # wrong version
        b"\x00\x05\x00",  # too short for a header
        b"\x01",  # too short for a version
        bytes(range(200)),  # garbage (version 0x0001)
        good,
    ]
    r = decode(payloads)
    assert len(r.flows) == 6
    assert r.dropped == {
        "v5_truncated": 2,
        "v5_bad_count": 2,
        "unknown_version": 2,
        "v5_short_header": 1,
        "short_datagram": 1,
    }
    assert r.datagrams == len(payloads)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=1600), min_size=1, max_size=8))
def test_any_bytes_yield_flows_or_counted_drops(payloads):
    # Bias towards v5-looking input: prefix half of them with a v5 version field.
    payloads = [b"\x00\x05" + p if i % 2 else p for i, p in enumerate(payloads)]
    r = decode(payloads)
    accepted = r.datagrams - sum(r.dropped.values())
    assert r.datagrams == len(payloads)
    assert accepted >= 0
    assert len(r.flows) <= 30 * accepted


def test_synthetic_encoder_round_trips_exactly():
    rng = np.random.default_rng(3)
    n = 500
    start = 1_790_000_000_000 + rng.integers(0, 3_600_000, n)
    flows = SynthFlows(
        ip_version=np.full(n, 4, np.uint8),
        src4=rng.integers(0, 2**32, n).astype(np.uint32),
        dst4=rng.integers(0, 2**32, n).astype(np.uint32),
        src6=np.zeros((n, 2), np.uint64),
        dst6=np.zeros((n, 2), np.uint64),
        octets=rng.integers(0, 2**32, n).astype(np.uint64),
        packets=rng.integers(1, 2**32, n).astype(np.uint64),
        start_ms=start,
        end_ms=start + rng.integers(0, 1_800_000, n),
        exporter=np.zeros(n, np.int32),
        owner=np.zeros(n, np.int32),
        direction=np.zeros(n, np.int8),
        input_if=np.ones(n, np.uint16),
        output_if=np.ones(n, np.uint16),
    )
    # Boot 49.7 days before the flows minus a bit, so the uptime wraps mid-capture.
    boot = 1_790_000_000_000 + 1_800_000 - 2**32
    datagrams = encode_v5(flows, [V5Exporter("192.0.2.1", 1, boot)])
    r = decode([d.payload for d in datagrams])
    order = np.lexsort((r.flows.octet_delta_count, r.flows.flow_start_milliseconds))
    want = np.lexsort((flows.octets, flows.start_ms))
    assert r.flows.flow_start_milliseconds[order].tolist() == flows.start_ms[want].tolist()
    assert r.flows.flow_end_milliseconds[order].tolist() == flows.end_ms[want].tolist()
    assert r.flows.octet_delta_count[order].tolist() == flows.octets[want].tolist()
    assert r.flows.source_ipv4_address[order].tolist() == flows.src4[want].tolist()
    assert not r.dropped and not r.notes
