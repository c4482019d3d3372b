"""IPFIX decoding: generated captures against ground truth, and RFC 7011 details (withdrawal,
variable-length fields, enterprise elements, padding, reduced-size encoding, every time
representation, options data, sequence numbers counting data records)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from flow_builders import (
    batch,
    decode_and_attribute,
    ip4,
    ipfix_message,
    ipfix_set,
    ipfix_template,
    truth_by_key,
)

from collector.decode import Decoder
from collector.decode.sequence import SequenceTracker
from collector.synth.model import TrafficSpec
from collector.synth.netflow9 import TemplatedExporter
from collector.synth.scenario_v9 import templated_scenario

EXPORT_S = 1_800_000_000
BASE = [(8, 4), (12, 4), (1, 8), (2, 8)]


def rec_base(src="10.0.0.1", dst="11.0.0.1", octets=1000, packets=2) -> bytes:
    return struct.pack(">IIQQ", ip4(src), ip4(dst), octets, packets)


def decode(*messages: bytes, decoder: Decoder | None = None, source="192.0.2.1"):
    return (decoder or Decoder()).decode(batch(list(messages), source))


@pytest.fixture(scope="module")
def ipfix_capture(tmp_path_factory):
    return templated_scenario(
        tmp_path_factory.mktemp("ipfix"), protocol="ipfix", spec=TrafficSpec(seed=5, flows=20_000)
    )


@pytest.mark.parametrize("chunk", [1 << 22, 1 << 13], ids=["one-batch", "many-batches"])
def test_generated_ipfix_capture_equals_ground_truth(ipfix_capture, chunk):
    got, notes, dropped, flows = decode_and_attribute(
        ipfix_capture.capture, ipfix_capture.members, chunk_bytes=chunk
    )
    assert got == truth_by_key(ipfix_capture.truth)
    assert sum(len(f) for f in flows) == len(ipfix_capture.flows)
    assert not dropped
    assert notes["template_withdrawn"] == 1  # the IPv6 router redefines 256 mid-capture
    assert notes["ipfix_records_decoded_after_template"] > 0
    v6 = np.concatenate([f.ip_version for f in flows]) == 6
    assert 0 < v6.sum() < len(v6)


def test_ipfix_all_time_modes_and_ipv6_transport(tmp_path):
    spec = TrafficSpec(seed=9, flows=3000)
    routers = [
        TemplatedExporter("2001:db8::1", time_mode="ms", destination_port=4739),
        TemplatedExporter("192.0.2.2", time_mode="delta", samplers=((9, 7),)),
        TemplatedExporter("192.0.2.3", time_mode="uptime", boot_ms=spec.start_ms - 60 * 86_400_000),
    ]
    sc = templated_scenario(tmp_path, protocol="ipfix", spec=spec, exporters=routers)
    got, _notes, dropped, _flows = decode_and_attribute(sc.capture, sc.members)
    assert got == truth_by_key(sc.truth) and not dropped


def test_withdrawal_single_and_all_then_redefinition():
    dec = Decoder()
    tpl = ipfix_set(2, ipfix_template(256, BASE) + ipfix_template(257, BASE))
    r = decode(ipfix_message([tpl, ipfix_set(256, rec_base())]), decoder=dec)
    assert len(r.flows) == 1
    withdraw = ipfix_set(2, struct.pack(">HH", 256, 0))
    r = decode(ipfix_message([withdraw, ipfix_set(256, rec_base())]), decoder=dec)
    assert len(r.flows) == 0 and r.notes["ipfix_sets_waiting_for_template"] == 1
    # Redefined with another layout: the waiting set decodes with the *new* template.
    other = [(1, 8), (2, 8), (8, 4), (12, 4)]
    r = decode(ipfix_message([ipfix_set(2, ipfix_template(256, other))]), decoder=dec)
    assert len(r.flows) == 1  # the buffered set, read with the new layout
    r = decode(ipfix_message([ipfix_set(257, rec_base())]), decoder=dec)
    assert len(r.flows) == 1
    withdraw_all = ipfix_set(2, struct.pack(">HH", 2, 0))
    r = decode(
        ipfix_message([withdraw_all, ipfix_set(257, rec_base()), ipfix_set(256, rec_base())]),
        decoder=dec,
    )
    assert len(r.flows) == 0 and r.notes["template_withdrawn"] == 2


def test_sets_of_one_message_in_order():
    """Template, options data and data in one message; data before a redefinition uses the
    old layout, data after it the new one."""
    old = ipfix_set(2, ipfix_template(256, BASE))
    new = ipfix_set(2, ipfix_template(256, [(1, 8), (2, 8), (8, 4), (12, 4)]))
    rec_new = struct.pack(">QQII", 5, 1, ip4("10.0.0.5"), ip4("11.0.0.5"))
    msg = ipfix_message([old, ipfix_set(256, rec_base(octets=7)), new, ipfix_set(256, rec_new)])
    r = decode(msg)
    assert sorted(r.flows.octet_delta_count.tolist()) == [5, 7]
    assert sorted(r.flows.source_ipv4_address.tolist()) == [ip4("10.0.0.1"), ip4("10.0.0.5")]


def test_variable_length_fields_and_enterprise_elements():
    fields = [(8, 4), (82, 65535), (12, 4), (1, 8, 0), (100, 65535, 9), (2, 8), (7, 2, 9)]
    tpl = ipfix_set(2, ipfix_template(300, fields))

    def rec(src, name: bytes, octets, blob: bytes):
        if len(blob) < 255:
            var2 = bytes([len(blob)]) + blob
        else:
            var2 = b"\xff" + struct.pack(">H", len(blob)) + blob
        return (
            struct.pack(">I", ip4(src))
            + bytes([len(name)])
            + name
            + struct.pack(">IQ", ip4("11.0.0.1"), octets)
            + var2
            + struct.pack(">QH", 3, 99)
        )

    body = rec("10.0.0.1", b"eth0", 100, b"") + rec("10.0.0.2", b"", 200, b"x" * 300)
    body += b"\0\0"  # padding shorter than a record
    r = decode(ipfix_message([tpl, ipfix_set(300, body)]))
    assert r.flows.octet_delta_count.tolist() == [100, 200]
    assert r.flows.source_ipv4_address.tolist() == [ip4("10.0.0.1"), ip4("10.0.0.2")]
    assert r.flows.packet_delta_count.tolist() == [3, 3]


def test_variable_length_record_cut_by_set_end_is_not_a_record():
    tpl = ipfix_set(2, ipfix_template(300, [(8, 4), (82, 65535), (1, 8)]))
    good = struct.pack(">I", ip4("10.0.0.1")) + b"\x02ab" + struct.pack(">Q", 5)
    cut = struct.pack(">I", ip4("10.0.0.2")) + b"\x09ab"
    r = decode(ipfix_message([tpl, ipfix_set(300, good + cut)]))
    assert r.flows.octet_delta_count.tolist() == [5]


def test_reduced_size_encoding_and_padding():
    fields = [(8, 4), (12, 4), (1, 3), (2, 1), (10, 2), (14, 1)]
    tpl = ipfix_set(2, ipfix_template(256, fields))
    recs = struct.pack(">II", ip4("10.0.0.1"), ip4("11.0.0.1")) + bytes([1, 2, 3, 9, 0, 7, 5])
    r = decode(ipfix_message([tpl, ipfix_set(256, recs + b"\0\0\0")]))
    assert r.flows.octet_delta_count.tolist() == [0x010203]
    assert r.flows.packet_delta_count.tolist() == [9]
    assert r.flows.ingress_interface.tolist() == [7]
    assert r.flows.egress_interface.tolist() == [5]


NTP = 2_208_988_800


@pytest.mark.parametrize(
    ("fields", "values", "expect"),
    [
        (
            [(152, 8), (153, 8)],
            [1_799_999_990_123, 1_799_999_995_456],
            (1_799_999_990_123, 1_799_999_995_456),
        ),
        (
            [(150, 4), (151, 4)],
            [1_799_999_990, 1_799_999_995],
            (1_799_999_990_000, 1_799_999_995_000),
        ),
        (
            [(154, 8), (155, 8)],
            [((1_799_999_990 + NTP) << 32) | (1 << 31), ((1_799_999_995 + NTP) << 32)],
            (1_799_999_990_500, 1_799_999_995_000),
        ),
        (
            [(156, 8), (157, 8)],
            [((1_799_999_990 + NTP) << 32) | (1 << 30), ((1_799_999_995 + NTP) << 32)],
            (1_799_999_990_250, 1_799_999_995_000),
        ),
        ([(158, 4), (159, 4)], [10_000_000, 2_500_000], (1_799_999_990_000, 1_799_999_997_500)),
        ([(153, 8), (161, 4)], [1_799_999_995_000, 3000], (1_799_999_992_000, 1_799_999_995_000)),
        (
            [(152, 8), (162, 4)],
            [1_799_999_995_000, 3_000_999],
            (1_799_999_995_000, 1_799_999_998_000),
        ),
    ],
    ids=["ms", "s", "us-ntp", "ns-ntp", "delta-us", "end+duration", "start+duration-us"],
)
def test_time_representations(fields, values, expect):
    tpl = ipfix_set(2, ipfix_template(256, BASE + fields))
    body = rec_base()
    for (_e, n), v in zip(fields, values, strict=True):
        body += v.to_bytes(n, "big")
    r = decode(ipfix_message([tpl, ipfix_set(256, body)], export_s=EXPORT_S))
    f = r.flows
    assert (int(f.flow_start_milliseconds[0]), int(f.flow_end_milliseconds[0])) == expect
    assert f.time_source.tolist() == [0]


def test_sysuptime_needs_system_init_time():
    fields = [*BASE, (22, 4), (21, 4)]
    tpl = ipfix_set(2, ipfix_template(256, fields))
    body = rec_base() + struct.pack(">II", 5000, 9000)
    r = decode(ipfix_message([tpl, ipfix_set(256, body)]))
    assert r.flows.time_source.tolist() == [1]  # no init time: export time, counted
    assert r.notes["time_from_export"] == 1
    assert int(r.flows.flow_start_milliseconds[0]) == EXPORT_S * 1000
    init = 1_799_000_000_000
    opt_tpl = ipfix_set(3, ipfix_template(400, [(149, 4), (160, 8)], scope=1))
    opt = ipfix_set(400, struct.pack(">IQ", 0, init))
    r = decode(ipfix_message([tpl, opt_tpl, opt, ipfix_set(256, body)]))
    f = r.flows
    assert (int(f.flow_start_milliseconds[0]), int(f.flow_end_milliseconds[0])) == (
        init + 5000,
        init + 9000,
    )


def test_selector_sampling_options():
    fields = [*BASE, (302, 2)]
    tpl = ipfix_set(2, ipfix_template(256, fields))
    opt_tpl = ipfix_set(3, ipfix_template(401, [(302, 2), (305, 4), (306, 4)], scope=1))
    opt = ipfix_set(401, struct.pack(">HII", 1, 1, 99) + struct.pack(">HII", 2, 10, 90))
    body = rec_base() + b"\0\x01" + rec_base() + b"\0\x02" + rec_base() + b"\0\x03"
    r = decode(ipfix_message([tpl, opt_tpl, opt, ipfix_set(256, body)]))
    assert r.flows.sampling_interval.tolist() == [100, 10, 0]


def test_population_size_and_domain_default():
    opt_tpl = ipfix_set(3, ipfix_template(402, [(149, 4), (309, 4), (310, 4)], scope=1))
    opt = ipfix_set(402, struct.pack(">III", 0, 1, 256))
    tpl = ipfix_set(2, ipfix_template(256, BASE))
    r = decode(ipfix_message([opt_tpl, opt, tpl, ipfix_set(256, rec_base())]))
    assert r.flows.sampling_interval.tolist() == [256]


def test_ipv4_and_ipv6_in_one_template():
    fields = [(8, 4), (12, 4), (27, 16), (28, 16), (1, 8), (2, 8)]
    tpl = ipfix_set(2, ipfix_template(256, fields))
    v6 = bytes(range(16))
    r4 = struct.pack(">II", ip4("10.0.0.1"), ip4("11.0.0.1")) + bytes(32) + struct.pack(">QQ", 1, 1)
    r6 = bytes(8) + v6 + v6[::-1] + struct.pack(">QQ", 2, 1)
    r = decode(ipfix_message([tpl, ipfix_set(256, r4 + r6)]))
    assert r.flows.ip_version.tolist() == [4, 6]
    hi = int.from_bytes(v6[:8], "big")
    assert int(r.flows.source_ipv6_address[1, 0]) == hi


def test_malformed_templates_are_counted_not_raised():
    bad_scope = ipfix_set(3, ipfix_template(400, [(149, 4)], scope=0))
    truncated = ipfix_set(2, struct.pack(">HH", 256, 5) + struct.pack(">HH", 8, 4))
    enterprise_cut = ipfix_set(2, struct.pack(">HHH", 256, 1, 0x8001))
    r = decode(
        ipfix_message([bad_scope]), ipfix_message([truncated]), ipfix_message([enterprise_cut])
    )
    assert r.dropped["ipfix_options_template_bad_scope"] == 1
    assert r.dropped["ipfix_template_truncated"] == 2


def test_message_length_rules():
    tpl = ipfix_set(2, ipfix_template(256, BASE))
    msg = ipfix_message([tpl, ipfix_set(256, rec_base())])
    too_long = msg[:2] + struct.pack(">H", len(msg) + 10) + msg[4:]
    r = decode(too_long)
    assert r.dropped["ipfix_bad_message_length"] == 1 and len(r.flows) == 0


def test_sequence_counts_data_records_including_options():
    dec = Decoder()
    tpl = ipfix_set(2, ipfix_template(256, BASE))
    msgs = [
        ipfix_message([tpl, ipfix_set(256, rec_base() * 3)], seq=0),
        ipfix_message([ipfix_set(256, rec_base() * 2)], seq=3),
        ipfix_message([ipfix_set(256, rec_base())], seq=9),  # 4 records lost
        ipfix_message([ipfix_set(256, rec_base())], seq=9),  # duplicate
    ]
    r = decode(*msgs, decoder=dec)
    rows = r.sequence
    assert sum(s.lost for s in rows) == 4
    assert sum(s.duplicates for s in rows) == 1
    assert sum(s.received for s in rows) == 3 + 2 + 1


def test_sequence_tracker_wrap_and_reset():
    t = SequenceTracker()
    seq = np.array([2**32 - 2, 0, 2, 2**31], np.int64)
    rows = t.observe(
        [(0, 1)], 9, np.zeros(4, np.int64), np.zeros(4), seq, np.array([2, 2, 2, 2]), np.zeros(4)
    )
    assert sum(r.lost for r in rows) == 0
    assert sum(r.resets for r in rows) == 1


def test_template_state_bounded_per_exporter_and_persisted():
    from collector.decode.templates import Limits

    dec = Decoder(limits=Limits(templates_per_exporter=3))
    tpls = b"".join(ipfix_template(256 + i, BASE) for i in range(5))
    r = decode(ipfix_message([ipfix_set(2, tpls)]), decoder=dec)
    assert r.dropped["template_limit_exceeded"] == 2
    assert len(dec.state.templates) == 3
    snap = dec.snapshot()
    assert {t["template_id"] for t in snap["templates"]} == {256, 257, 258}


def test_resent_template_sets_are_parsed_once_and_errors_counted_each_time():
    """A re-sent identical set reuses the parsed templates (the cache of
    collector/decode/flowsets.py) and is still counted and applied; a set with the same
    id and new fields is parsed anew (replaced); a malformed set is never cached, so its
    error counts at every sending; the cache stays within its bound."""
    dec = Decoder()
    tpl = ipfix_set(2, ipfix_template(256, BASE))
    cache = dec.state.template_sets
    for k in range(3):
        r = decode(ipfix_message([tpl, ipfix_set(256, rec_base(octets=100 + k))]), decoder=dec)
        assert r.notes["ipfix_templates"] == 1
        assert r.flows.octet_delta_count.tolist() == [100 + k]
    assert len(cache._sets) == 1
    held = dec.state.templates.get(next(iter(dec.state.templates._templates)))
    (cached,) = next(iter(cache._sets.values()))
    assert held is cached  # one Template object for every re-send

    other = ipfix_set(2, ipfix_template(256, [(1, 8), (2, 8), (8, 4), (12, 4)]))
    record = struct.pack(">QQII", 7, 1, ip4("10.0.0.1"), ip4("11.0.0.1"))
    r = decode(ipfix_message([other, ipfix_set(256, record)]), decoder=dec)
    assert r.dropped["template_replaced"] == 1 and r.flows.octet_delta_count.tolist() == [7]
    assert len(cache._sets) == 2

    truncated = ipfix_set(2, struct.pack(">HH", 300, 5) + struct.pack(">HH", 8, 4))
    for _ in range(3):
        r = decode(ipfix_message([truncated]), decoder=dec)
        assert r.dropped["ipfix_template_truncated"] == 1
    assert len(cache._sets) == 2

    cache.limit = 4
    for tid in range(400, 410):
        decode(ipfix_message([ipfix_set(2, ipfix_template(tid, BASE))]), decoder=dec)
        assert len(cache._sets) <= 4


def test_repeated_template_sets_in_one_batch_decode_as_message_by_message():
    """Routers re-send one template set every few datagrams; the decoder skips a repeat of
    a set that changed nothing only until something changes. A batch where one id switches
    layout and back (and a set with an error recurs) decodes exactly as its messages do
    one by one: same flows, same notes, the error counted every time."""
    layout_b = [(1, 8), (2, 8), (8, 4), (12, 4)]
    a = ipfix_set(2, ipfix_template(256, BASE))
    b = ipfix_set(2, ipfix_template(256, layout_b))
    both = ipfix_set(2, ipfix_template(256, BASE) + ipfix_template(257, layout_b))
    bad = ipfix_set(2, ipfix_template(12, BASE))  # template ids start at 256

    def record(tpl: bytes, octets: int) -> bytes:
        if tpl == b:
            return struct.pack(">QQII", octets, 1, ip4("10.0.0.9"), ip4("11.0.0.9"))
        return rec_base(octets=octets)

    order = [a, a, bad, a, bad, b, b, bad, a, a, both, a, both, b, a]
    messages = [
        ipfix_message([tpl, ipfix_set(256, record(tpl, 100 + i))], seq=i)
        for i, tpl in enumerate(order)
    ]
    whole = decode(*messages)
    dec = Decoder()
    alone = [decode(m, decoder=dec) for m in messages]
    assert sorted(whole.flows.octet_delta_count.tolist()) == sorted(
        int(o) for r in alone for o in r.flows.octet_delta_count.tolist()
    )
    assert sorted(whole.flows.source_ipv4_address.tolist()) == sorted(
        int(s) for r in alone for s in r.flows.source_ipv4_address.tolist()
    )
    assert len(whole.flows) == len(order)  # a bad set leaves the template in force
    assert whole.notes["ipfix_templates"] == sum(r.notes["ipfix_templates"] for r in alone)
    assert whole.dropped["ipfix_bad_template_id"] == 3
    assert whole.notes["template_replaced"] + whole.dropped.get("template_replaced", 0) == sum(
        r.notes["template_replaced"] + r.dropped.get("template_replaced", 0) for r in alone
    )
