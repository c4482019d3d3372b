"""From a generated NetFlow v5 capture to the monthly report, against the exact ground truth.

The capture and its truth come from collector.synth (a traffic model whose every flow has a
known owner and direction); the path under test is the real one: `egress ingest` into a
DuckDB file, then `egress report --format json` and the stored per-bin usage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest
from click.testing import CliRunner

from collector.synth.model import DIR_IN, DIR_NONE, DIR_OUT, TrafficSpec
from collector.synth.pcapwriter import LINK_LINUX_SLL, Datagram, write_capture
from collector.synth.scenario import v5_scenario
from reports.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    directory = tmp_path_factory.mktemp("e2e")
    return v5_scenario(directory, members=25, spec=TrafficSpec(seed=7, flows=30_000))


@pytest.fixture(scope="module")
def ingested(scenario):
    result = run("ingest", "-c", str(scenario.config), str(scenario.capture))
    assert result.exit_code == 0, result.output
    return scenario


def truth_by_member(scenario):
    totals = scenario.truth.totals_by_owner()
    per_member = {}
    for i, m in enumerate(scenario.members):
        per_member[m.id] = (totals.get((i, DIR_IN), 0), totals.get((i, DIR_OUT), 0))
    return per_member, totals.get((-2, DIR_NONE), 0), totals.get((-1, DIR_NONE), 0)


def test_report_json_equals_ground_truth(ingested):
    result = run("report", "-c", str(ingested.config), "--month", "2026-11", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    per_member, internal, unattributed = truth_by_member(ingested)
    got = {m["id"]: (m["bytes_in"], m["bytes_out"]) for m in report["members"]}
    assert got == per_member
    assert report["internal"]["bytes"] == internal
    assert report["unattributed"]["bytes_in"] == 0
    assert report["unattributed"]["bytes_out"] == 0
    assert report["unattributed"]["bytes_unknown_direction"] == unattributed
    assert internal > 0 and unattributed > 0
    assert report["month"] == "2026-11"
    assert sum(m["share_cents"] for m in report["members"]) == 400_000
    assert {"id", "bytes_in", "bytes_out", "p95_in_bps", "p95_out_bps", "share_cents"} <= set(
        report["members"][0]
    )


def test_stored_usage_per_bin_equals_ground_truth(ingested):
    con = duckdb.connect(str(ingested.config.parent / "egress.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT epoch_ms(bin_start), bucket, member_id, direction, bytes, packets, flows FROM usage"
        ).fetchall()
    finally:
        con.close()
    ids = [m.id for m in ingested.members]
    names = {DIR_IN: "in", DIR_OUT: "out", DIR_NONE: "none"}
    truth = {}
    t = ingested.truth
    for o, b, d, nb, npk, nf in zip(
        t.owner.tolist(),
        t.bin_start_ms.tolist(),
        t.direction.tolist(),
        t.bytes.tolist(),
        t.packets.tolist(),
        t.flows.tolist(),
        strict=True,
    ):
        bucket, member = (
            ("member", ids[o])
            if o >= 0
            else (("internal", "") if o == -2 else ("unattributed", ""))
        )
        truth[(b, bucket, member, names[d])] = (nb, npk, nf)
    stored = {(r[0], r[1], r[2], r[3]): (r[4], r[5], r[6]) for r in rows}
    assert stored == truth
    assert len(stored) > 100
    # Flows spanning several bins were generated, so some bins hold parts without a flow start.
    assert any(v[2] == 0 and v[0] > 0 for v in stored.values())


def test_ingesting_the_same_file_twice_counts_once(ingested):
    db = ingested.config.parent / "egress.duckdb"

    def total():
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute("SELECT sum(bytes), count(*) FROM usage").fetchall()[0]
        finally:
            con.close()

    before = total()
    result = run("ingest", "-c", str(ingested.config), str(ingested.capture))
    assert result.exit_code == 0
    assert "already ingested as source #1" in result.output
    assert "nothing written" in result.output
    assert total() == before


def test_sll_pcapng_capture_with_bad_datagrams(tmp_path, scenario):
    """The same flows through another link type and format, with garbage mixed in."""
    from collector.pcap import read_datagrams

    good = []
    for batch in read_datagrams(scenario.capture):
        good += [bytes(batch.payload(i)) for i in range(len(batch))]
    bad = [
        good[0][:100],  # truncated v5
        b"\x00\x05\x00\x00" + good[1][4:],  # v5 with a count of 0
        b"\x00\x63" + good[2][2:],  # unknown version 99
        bytes(300),  # zeros: version 0
    ]
    datagrams = [Datagram(1_000_000 * i, "192.0.2.10", p) for i, p in enumerate(good)]
    datagrams[10:10] = [Datagram(0, "192.0.2.10", p) for p in bad]
    datagrams[20:20] = [Datagram(0, "192.0.2.66", good[3])] * 3  # an undeclared router
    capture = tmp_path / "mixed.pcapng"
    write_capture(capture, datagrams, linktype=LINK_LINUX_SLL, pcapng=True)
    config = tmp_path / "egress.toml"
    config.write_text(scenario.config.read_text())
    result = run("ingest", "-c", str(config), str(capture))
    assert result.exit_code == 0, result.output
    assert (
        "dropped (datagrams): unknown_exporter 3, unknown_version 2, v5_bad_count 1, v5_truncated 1"
        in result.output
    )
    assert (
        "from exporters not declared under [[exporters]] (dropped): 192.0.2.66 3" in result.output
    )
    report = json.loads(run("report", "-c", str(config), "-m", "2026-11", "-f", "json").output)
    per_member, internal, unattributed = truth_by_member(scenario)
    assert {m["id"]: (m["bytes_in"], m["bytes_out"]) for m in report["members"]} == per_member
    assert report["internal"]["bytes"] == internal
    assert report["unattributed"]["bytes_unknown_direction"] == unattributed
    assert report["counters"]["dropped"] == {
        "unknown_exporter": 3,
        "unknown_exporter:192.0.2.66": 3,
        "unknown_version": 2,
        "v5_bad_count": 1,
        "v5_truncated": 1,
    }


def test_csv_and_table_formats(ingested):
    csv_out = run("report", "-c", str(ingested.config), "-m", "2026-11", "-f", "csv").output
    lines = csv_out.strip().splitlines()
    assert lines[0].startswith("month,member_id,name,bytes_in,bytes_out")
    assert len(lines) == 1 + len(ingested.members)
    assert sum(int(line.split(",")[-1]) for line in lines[1:]) == 400_000
    table = run("report", "-c", str(ingested.config), "-m", "2026-11").output
    assert "unattributed" in table and "internal" in table and "4 000.00 EUR" in table


def test_report_to_file(ingested, tmp_path):
    out = tmp_path / "r.json"
    result = run(
        "report", "-c", str(ingested.config), "-m", "2026-11", "-f", "json", "-o", str(out)
    )
    assert result.exit_code == 0 and result.output == ""
    assert json.loads(out.read_text())["month"] == "2026-11"


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["report", "-m", "2026-11", "-c", "{dir}/missing.toml"], "file not found", 1),
        (["report", "-m", "2026-11", "-c", "{dir}/bad.toml"], "not valid TOML", 1),
        (["report", "-m", "2026-11", "-c", "{dir}/nodb.toml"], "no such database", 1),
        (["report", "-m", "2026-02", "-c", "{config}"], "no data for 2026-02", 1),
        (["report", "-m", "november", "-c", "{config}"], "--month must look like 2026-11", 1),
        (["report", "-m", "2026-00", "-c", "{config}"], "is not a valid month", 1),
        (["report", "-c", "{config}"], "Missing option '--month'", 2),
        (
            ["report", "-m", "2026-11", "-f", "xml", "-c", "{config}"],
            "Invalid value for '--format'",
            2,
        ),
        (["ingest", "-c", "{config}", "{dir}/nope.pcap"], "does not exist", 2),
        (["ingest", "-c", "{config}", "{dir}/bad.toml"], "not a pcap or pcapng file", 1),
        (["members", "check", "-c", "{dir}/bad.toml"], "not valid TOML", 1),
        (["demo", "--members", "0"], "must be from 1 to 16384", 2),
    ],
)
def test_misuse_gives_a_message_and_no_traceback(ingested, tmp_path, args, message, code):
    (tmp_path / "bad.toml").write_text("[contract\n")
    (tmp_path / "nodb.toml").write_text(
        f'[storage]\ndatabase = "{tmp_path}/none.duckdb"\n[contract]\nmonthly_eur = 1\n'
    )
    argv = [a.format(dir=tmp_path, config=ingested.config) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_members_check_and_list(ingested):
    result = run("members", "check", "-c", str(ingested.config))
    assert result.exit_code == 0
    assert f"OK, {len(ingested.members)} members" in result.output
    listing = run("members", "list", "-c", str(ingested.config)).output.splitlines()
    assert listing[0].split("\t")[0] == ingested.members[0].id


def test_sources_table_records_the_file(ingested):
    con = duckdb.connect(str(ingested.config.parent / "egress.duckdb"), read_only=True)
    try:
        name, flows, first = con.execute(
            "SELECT name, flows, first_flow FROM sources WHERE source_id = 1"
        ).fetchall()[0]
    finally:
        con.close()
    assert name == str(ingested.capture)
    assert flows == len(ingested.flows)
    assert first == datetime.fromtimestamp(int(ingested.flows.start_ms.min()) / 1000, UTC)


def test_overlapping_captures_add_up_in_the_same_bins(tmp_path, scenario):
    """Two captures covering the same bins (two halves of the routers' exports) add up
    into one row per key, equal to the truth of the whole."""
    from collector.pcap import read_datagrams

    payloads = [
        (int(b.arrival_ns[i]), bytes(b.payload(i)))
        for b in read_datagrams(scenario.capture)
        for i in range(len(b))
    ]
    halves = [tmp_path / "even.pcap", tmp_path / "odd.pcap"]
    for k, path in enumerate(halves):
        write_capture(
            path, [Datagram(t, "192.0.2.10", p) for j, (t, p) in enumerate(payloads) if j % 2 == k]
        )
    config = tmp_path / "egress.toml"
    config.write_text(scenario.config.read_text())
    for path in halves:
        assert run("ingest", "-c", str(config), str(path)).exit_code == 0
    con = duckdb.connect(str(tmp_path / "egress.duckdb"), read_only=True)
    try:
        dupes = con.execute(
            "SELECT count(*) FROM (SELECT bin_start, bucket, member_id, direction FROM usage"
            " GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert dupes == 0
    report = json.loads(run("report", "-c", str(config), "-m", "2026-11", "-f", "json").output)
    per_member, internal, _ = truth_by_member(scenario)
    assert {m["id"]: (m["bytes_in"], m["bytes_out"]) for m in report["members"]} == per_member
    assert report["internal"]["bytes"] == internal


def test_completeness_counts_the_flows_of_missing_datagrams(tmp_path, scenario):
    """Datagrams removed from one router's stream show up as lost export sequence units
    (v5 counts flows) in the report's completeness, exactly."""
    from collector.pcap import read_datagrams

    kept, lost_flows = [], 0
    k = 0
    for batch in read_datagrams(scenario.capture):
        for i in range(len(batch)):
            payload = bytes(batch.payload(i))
            source = "192.0.2.10" if int(batch.source_address[i, 1]) & 0xFF == 10 else "192.0.2.11"
            if source == "192.0.2.10":
                k += 1
                if k % 10 == 5:  # never the first or the last of the stream
                    lost_flows += int.from_bytes(payload[2:4], "big")
                    continue
            kept.append(Datagram(int(batch.arrival_ns[i]), source, payload))
    capture = tmp_path / "lossy.pcap"
    write_capture(capture, kept)
    config = tmp_path / "egress.toml"
    config.write_text(scenario.config.read_text())
    assert run("ingest", "-c", str(config), str(capture)).exit_code == 0
    report = json.loads(run("report", "-c", str(config), "-m", "2026-11", "-f", "json").output)
    lines = {e["address"]: e for e in report["completeness"]["exporters"]}
    assert lines["192.0.2.10"]["sequence_lost"] == lost_flows > 0
    assert lines["192.0.2.11"]["sequence_lost"] == 0
    assert lines["192.0.2.11"]["completeness"] == 1.0
    received = lines["192.0.2.10"]["sequence_received"]
    assert lines["192.0.2.10"]["completeness"] == pytest.approx(received / (received + lost_flows))
    table = run("report", "-c", str(config), "-m", "2026-11").output
    assert f"({lost_flows:,} lost" in table
