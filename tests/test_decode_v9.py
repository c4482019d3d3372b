"""NetFlow v9 decoding: generated captures against ground truth, and the template state rules
(keyed by exporter/domain/template id, never the port; data before template; sampling options;
uptime wrap; limits; persistence; sequence accounting)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from flow_builders import batch, decode_and_attribute, ip4, truth_by_key, v9_packet, v9_template

from collector.decode import Decoder
from collector.decode.templates import Limits
from collector.synth.model import TrafficSpec
from collector.synth.scenario_v9 import templated_scenario

TPL = [(8, 4), (12, 4), (1, 4), (2, 4), (22, 4), (21, 4)]


def v9_records(rows: list[tuple]) -> bytes:
    return b"".join(struct.pack(">IIIIII", *r) for r in rows)


def data_flowset(tid: int, body: bytes) -> bytes:
    return struct.pack(">HH", tid, 4 + len(body)) + body


def tpl_flowset(*templates: bytes) -> bytes:
    body = b"".join(templates)
    return struct.pack(">HH", 0, 4 + len(body)) + body


@pytest.fixture(scope="module")
def v9_capture(tmp_path_factory):
    return templated_scenario(
        tmp_path_factory.mktemp("v9"), protocol="v9", spec=TrafficSpec(seed=11, flows=20_000)
    )


@pytest.mark.parametrize("chunk", [1 << 22, 1 << 13], ids=["one-batch", "many-batches"])
def test_generated_v9_capture_equals_ground_truth(v9_capture, chunk):
    got, notes, dropped, flows = decode_and_attribute(
        v9_capture.capture, v9_capture.members, chunk_bytes=chunk
    )
    assert got == truth_by_key(v9_capture.truth)
    assert sum(len(f) for f in flows) == len(v9_capture.flows)
    assert not dropped
    # The sampled router's first packets came before its template: buffered, then decoded.
    assert notes["v9_sets_waiting_for_template"] > 0
    assert notes["v9_records_decoded_after_template"] > 0
    assert notes["sampling_rates_learnt"] > 0


def test_ingest_and_report_equal_ground_truth(v9_capture, tmp_path):
    from click.testing import CliRunner

    from reports.cli import main

    config = tmp_path / "egress.toml"
    config.write_text(
        v9_capture.config.read_text().replace("egress.duckdb", str(tmp_path / "e.duckdb"))
    )
    result = CliRunner().invoke(main, ["ingest", "-c", str(config), str(v9_capture.capture)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main, ["report", "-c", str(config), "--month", "2026-11", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    totals = v9_capture.truth.totals_by_owner()
    for i, m in enumerate(v9_capture.members):
        got = next(r for r in report["members"] if r["id"] == m.id)
        assert (got["bytes_in"], got["bytes_out"]) == (totals.get((i, 0), 0), totals.get((i, 1), 0))


def _one_flow(tid=256, src="10.0.0.1", octets=1000, fields=TPL, uptime=1_000_000):
    rec = v9_records([(ip4(src), ip4("11.0.0.1"), octets, 3, uptime - 5000, uptime - 1000)])
    return rec


def test_template_keyed_by_exporter_not_port():
    dec = Decoder()
    tpl = v9_packet([tpl_flowset(v9_template(256, TPL))])
    data = v9_packet([data_flowset(256, _one_flow())])
    b = batch([tpl, data], ["192.0.2.1", "192.0.2.1"])
    ports = np.array([1000, 2000], np.uint16)  # the template and the data from two ports
    b = type(b)(b.buffer, b.offsets, b.lengths, b.source_address, ports, b.arrival_ns)
    r = dec.decode(b)
    assert len(r.flows) == 1 and int(r.flows.octet_delta_count[0]) == 1000
    # Another exporter using the same template id without sending it gets nothing yet.
    r = dec.decode(batch([data], "192.0.2.2"))
    assert len(r.flows) == 0 and r.notes["v9_sets_waiting_for_template"] == 1


def test_same_template_id_two_exporters_two_layouts():
    other = [(1, 4), (2, 4), (8, 4), (12, 4), (22, 4), (21, 4)]
    dec = Decoder()
    a = v9_packet([tpl_flowset(v9_template(256, TPL)), data_flowset(256, _one_flow(octets=111))])
    rec_b = struct.pack(">IIIIII", 222, 2, ip4("10.0.0.9"), ip4("11.0.0.9"), 995_000, 999_000)
    b = v9_packet([tpl_flowset(v9_template(256, other)), data_flowset(256, rec_b)])
    r = dec.decode(batch([a, b], ["192.0.2.1", "192.0.2.2"]))
    by_src = dict(
        zip(r.flows.source_ipv4_address.tolist(), r.flows.octet_delta_count.tolist(), strict=True)
    )
    assert by_src == {ip4("10.0.0.1"): 111, ip4("10.0.0.9"): 222}


def test_source_id_separates_template_spaces():
    dec = Decoder()
    tpl = v9_packet([tpl_flowset(v9_template(256, TPL))], source_id=1)
    data = v9_packet([data_flowset(256, _one_flow())], source_id=2)
    r = dec.decode(batch([tpl, data]))
    assert len(r.flows) == 0 and r.notes["v9_sets_waiting_for_template"] == 1


def test_data_before_template_in_one_packet_and_across_batches():
    dec = Decoder()
    mixed = v9_packet([data_flowset(256, _one_flow()), tpl_flowset(v9_template(256, TPL))])
    r = dec.decode(batch([mixed]))
    assert len(r.flows) == 1
    assert r.notes["v9_records_decoded_after_template"] == 1
    dec = Decoder()
    r1 = dec.decode(batch([v9_packet([data_flowset(256, _one_flow())])]))
    assert len(r1.flows) == 0 and r1.pending_sets == 1
    r2 = dec.decode(batch([v9_packet([tpl_flowset(v9_template(256, TPL))])]))
    assert len(r2.flows) == 1 and r2.pending_sets == 0
    assert int(r2.flows.flow_end_milliseconds[0]) == 1_800_000_000_000 - 1000


def test_pending_data_expires_and_is_bounded():
    limits = Limits(pending_age_ns=10**9, pending_bytes_per_exporter=200)
    dec = Decoder(limits=limits)
    data = v9_packet([data_flowset(256, _one_flow())])
    dec.decode(batch([data], arrival_ns=[0]))
    r = dec.decode(batch([data] * 5, arrival_ns=[5 * 10**9] * 5))
    assert r.dropped["pending_expired_sets"] == 1
    assert r.dropped["pending_evicted_sets"] >= 1  # 5 sets of 44+20 bytes exceed 200 bytes
    assert dec.close()["pending_never_decoded_sets"] == r.pending_sets


def test_sampler_options_give_each_record_its_rate():
    scope = struct.pack(">HH", 1, 4)
    opts = struct.pack(">HHHHHH", 48, 1, 49, 1, 50, 4)
    opt_tpl = struct.pack(">HHH", 300, 4, 12) + scope + opts
    opt_data = struct.pack(">IBBI", 0, 1, 2, 10) + struct.pack(">IBBI", 0, 2, 2, 100)
    fields = [*TPL, (48, 1)]
    recs = v9_records([(ip4("10.0.0.1"), ip4("11.0.0.1"), 10, 1, 1, 2)]) + b"\x01"
    recs += v9_records([(ip4("10.0.0.2"), ip4("11.0.0.1"), 10, 1, 1, 2)]) + b"\x02"
    recs += v9_records([(ip4("10.0.0.3"), ip4("11.0.0.1"), 10, 1, 1, 2)]) + b"\x07"
    pkt = v9_packet(
        [
            tpl_flowset(v9_template(256, fields)),
            struct.pack(">HH", 1, 4 + len(opt_tpl) + 2) + opt_tpl + b"\0\0",
            data_flowset(300, opt_data + b"\0\0"),
            data_flowset(256, recs + b"\0"),
        ]
    )
    r = Decoder().decode(batch([pkt]))
    assert r.flows.sampling_interval.tolist() == [10, 100, 0]
    assert r.notes["sampling_rate_not_exported"] == 1


def test_policy_default_and_override():
    from collector.decode.sampling import SamplingPolicy

    pkt = v9_packet([tpl_flowset(v9_template(256, TPL)), data_flowset(256, _one_flow())])
    r = Decoder(sampling=SamplingPolicy(defaults={"192.0.2.1": 64})).decode(batch([pkt]))
    assert r.flows.sampling_interval.tolist() == [64]
    r = Decoder(sampling=SamplingPolicy(default_rate=8)).decode(batch([pkt]))
    assert r.flows.sampling_interval.tolist() == [8]
    fields = [*TPL, (34, 4)]
    rec = _one_flow() + struct.pack(">I", 500)
    pkt = v9_packet([tpl_flowset(v9_template(256, fields)), data_flowset(256, rec)])
    assert Decoder().decode(batch([pkt])).flows.sampling_interval.tolist() == [500]
    r = Decoder(sampling=SamplingPolicy(overrides={"192.0.2.1": 1000})).decode(batch([pkt]))
    assert r.flows.sampling_interval.tolist() == [1000]


def test_uptime_wrap():
    # The exporter's uptime wrapped: header uptime 5000, flow stamps just before the wrap.
    rec = v9_records([(ip4("10.0.0.1"), ip4("11.0.0.1"), 1, 1, 2**32 - 3000, 2**32 - 1000)])
    pkt = v9_packet(
        [tpl_flowset(v9_template(256, TPL)), data_flowset(256, rec)], uptime=5000, unix_secs=1000
    )
    f = Decoder().decode(batch([pkt])).flows
    assert (int(f.flow_start_milliseconds[0]), int(f.flow_end_milliseconds[0])) == (
        1_000_000 - 8000,
        1_000_000 - 6000,
    )


def test_snapshot_restore_roundtrip_through_json():
    dec = Decoder()
    dec.decode(batch([v9_packet([tpl_flowset(v9_template(256, TPL))])]))
    snap = json.loads(json.dumps(dec.snapshot()))
    fresh = Decoder()
    fresh.restore(snap)
    r = fresh.decode(batch([v9_packet([data_flowset(256, _one_flow())])]))
    assert len(r.flows) == 1


def test_limits_templates_and_fields():
    dec = Decoder(limits=Limits(templates_per_exporter=2, fields_per_template=8))
    tpls = [v9_template(256 + i, TPL) for i in range(3)]
    r = dec.decode(batch([v9_packet([tpl_flowset(*tpls)])]))
    assert r.dropped["template_limit_exceeded"] == 1
    big = v9_template(400, [(1, 4)] * 9)
    r = dec.decode(batch([v9_packet([tpl_flowset(big)])], "192.0.2.9"))
    assert r.dropped["template_too_many_fields"] == 1


def test_records_per_set_bounded_by_bytes_and_padding_ignored():
    pkt = v9_packet([tpl_flowset(v9_template(256, TPL)), data_flowset(256, _one_flow() + b"\0\0")])
    r = Decoder().decode(batch([pkt]))
    assert len(r.flows) == 1
    bad = (
        v9_packet([tpl_flowset(v9_template(256, TPL))]) + struct.pack(">HH", 256, 4000) + b"x" * 24
    )
    r = Decoder().decode(batch([bad]))
    assert len(r.flows) == 0 and r.dropped["v9_bad_set_length"] == 1


def test_v5_v9_ipfix_in_one_batch():
    from collector.synth.model import generate_flows, make_members
    from collector.synth.netflow5 import V5Exporter, encode_v5

    flows = generate_flows(make_members(3, ipv6=False), TrafficSpec(flows=40, exporters=1))
    v5 = [d.payload for d in encode_v5(flows, [V5Exporter("192.0.2.5")])]
    v9 = v9_packet([tpl_flowset(v9_template(256, TPL)), data_flowset(256, _one_flow())])
    r = Decoder().decode(batch([*v5, v9], "192.0.2.5"))
    assert len(r.flows) == 41
    assert r.datagrams_by_version == {5: 2, 9: 1}


def test_sequence_gaps_duplicates_reorders():
    dec = Decoder()
    tpl = tpl_flowset(v9_template(256, TPL))
    seqs = [0, 1, 2, 5, 3, 5, 6]
    pkts = [v9_packet([tpl, data_flowset(256, _one_flow())], seq=s) for s in seqs]
    r = dec.decode(batch(pkts))
    rows = [s for s in r.sequence if s.version == 9]
    lost = sum(s.lost for s in rows)
    assert sum(s.duplicates for s in rows) == 1
    assert sum(s.reordered for s in rows) == 1
    assert lost == 1  # 3 and 4 missing, then 3 arrived late
    assert sum(s.messages for s in rows) == 7


def test_a_template_without_sampling_fields_takes_one_rate_for_all_its_records():
    """No per-record sampling element: every record gets the exporter's fallback rate,
    or 0 and the note once per record when there is none (the set-wide path of
    flowsets._rates)."""
    from collector.decode.sampling import SamplingPolicy

    pkt = v9_packet([tpl_flowset(v9_template(256, TPL)), data_flowset(256, _one_flow() * 3)])
    r = Decoder().decode(batch([pkt]))
    assert r.flows.sampling_interval.tolist() == [0, 0, 0]
    assert r.notes["sampling_rate_not_exported"] == 3
    r = Decoder(sampling=SamplingPolicy(default_rate=1 << 40)).decode(batch([pkt]))
    assert r.flows.sampling_interval.tolist() == [0xFFFF_FFFF] * 3  # saturated, as before
    assert r.notes["sampling_rate_not_exported"] == 0
