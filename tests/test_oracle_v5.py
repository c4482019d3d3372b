"""NetFlow v5 decoding checked against Wireshark's dissector (tshark through pyshark).

tshark is the oracle because its ``cflow`` dissector is an independent implementation of the
v5 format, maintained outside this project: agreement with it on every field is evidence
that egress reads the bytes right, not that egress agrees with itself (the synthetic
encoder shares egress's dtypes, so a round trip alone proves little).

Compared, datagram by datagram and record by record (see ``oracle_tshark``): the frame
(exporter address, UDP source port, payload length, capture time in ns: this checks the
pcap/pcapng and link-layer parsing), all nine v5 header fields and all twenty record fields
(padding included), then the FlowBatch columns the Decoder derives from them.

Inputs:
- generated captures (``collector.synth``): Ethernet, raw IP and Linux SLL links, pcap and
  pcapng, IPv4 and IPv6 transport, an uptime that wraps, a sampled exporter;
- a capture whose header and record bytes are random (so no field is a constant zero);
- every NetFlow v5 capture of ../shared/testdata/captures (MANIFEST.md rows "NetFlow v5"),
  plus the tcpdump sFlow capture that carries five real v5 datagrams on UDP 6343;
- corrupt datagrams (corpus and generated), where egress is deliberately stricter than
  tshark: the tests state what each does.

Tests that need ../shared skip, saying so, when it is absent (CI has it).
"""

from __future__ import annotations

import functools
import re
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from oracle_tshark import (
    HEADER_FIELDS,
    RECORD_FIELDS,
    EgressCapture,
    OracleCapture,
    compare_flows,
    compare_v5,
    egress_v5,
    mutated,
    tshark_v5,
)

from collector.decode.netflow5 import HEADER_DTYPE, RECORD_DTYPE
from collector.pcap import CaptureError, read_datagrams
from collector.synth.model import TrafficSpec
from collector.synth.netflow5 import V5Exporter
from collector.synth.pcapwriter import Datagram, write_capture
from collector.synth.scenario import v5_scenario

pytestmark = pytest.mark.oracle

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "captures"

# Corpus captures whose NetFlow v5 datagrams are on a port tshark does not decode as
# cflow by default (MANIFEST.md: "Non-default ports need decode-as").
DECODE_AS = {
    "akvorado/netflow-nfv5.pcap": (9990,),
    # sFlow capture from tcpdump's tests; 5 of its 30 frames are NetFlow v5 on UDP 6343.
    "tcpdump/sflow_multiple_counter_30_pdus.pcap": (6343,),
}
MIXED_SFLOW = "tcpdump/sflow_multiple_counter_30_pdus.pcap"
# Deliberately corrupt: header count is bogus, 30 records present (MANIFEST.md).
CORRUPT_COUNT = {
    "logstash-codec-netflow/netflow_5_invalid_01.pcap": 55582,
    "logstash-codec-netflow/netflow_5_invalid_02.pcap": 163,
}


def _needs_tshark() -> None:
    pytest.importorskip("pyshark", reason="pyshark is not installed (pip install pyshark)")
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")


def manifest_v5_rows() -> dict[str, int]:
    """MANIFEST.md capture rows whose protocol is NetFlow v5: path -> tshark's record count."""
    manifest = CAPTURES / "MANIFEST.md"
    if not manifest.is_file():
        return {}
    rows: dict[str, int] = {}
    in_captures = False
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_captures = line.startswith("## Captures")
            continue
        if not (in_captures and line.startswith("|")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or not re.match(r"NetFlow v5\b", cells[3]):
            continue
        rows[cells[0]] = int(cells[6])
    return rows


MANIFEST_V5 = manifest_v5_rows()
_ABSENT = [pytest.param(None, id="shared-captures-absent")]
AGREEING = sorted((set(MANIFEST_V5) - set(CORRUPT_COUNT)) | set(DECODE_AS)) if MANIFEST_V5 else []


@functools.cache
def oracle(path: Path, ports: tuple[int, ...] = ()) -> OracleCapture:
    return tshark_v5(path, decode_as_ports=ports)


def _corpus_file(captures_dir: Path, name: str | None) -> Path:
    assert name is not None  # captures_dir skipped already when ../shared is absent
    path = captures_dir / name
    assert path.is_file(), f"{name} is listed but missing from {captures_dir}"
    return path


def assert_agree(path: Path, ports: tuple[int, ...] = ()) -> tuple[OracleCapture, EgressCapture]:
    """tshark and egress agree on every datagram, record and flow of ``path``."""
    expected = oracle(path, ports)
    got = egress_v5(path)
    assert expected.records > 0, f"tshark decoded no v5 record in {path}: nothing compared"
    assert not any(d.malformed or d.expert for d in expected.datagrams), [
        (d.frame, d.expert) for d in expected.datagrams if d.malformed or d.expert
    ]
    problems = compare_v5(expected.datagrams, got.datagrams)
    assert problems == [], "\n".join(problems)
    problems = compare_flows(expected.datagrams, got)
    assert problems == [], "\n".join(problems)
    assert got.records == expected.records == len(got.flows)
    return expected, got


# --- the oracle covers what egress decodes ----------------------------------------------


def test_oracle_compares_every_field_egress_decodes():
    assert HEADER_DTYPE.names == HEADER_FIELDS
    assert RECORD_DTYPE.names == RECORD_FIELDS


def _sample_datagrams(tmp_path: Path):
    scenario = v5_scenario(tmp_path, members=3, spec=TrafficSpec(flows=40, seed=3))
    got = egress_v5(scenario.capture)
    assert len(got.datagrams) >= 2 and got.records == 40
    return got


def test_comparer_detects_any_single_change(tmp_path):
    """The comparison can fail: one altered value anywhere is reported, naming it."""
    base = _sample_datagrams(tmp_path).datagrams
    assert compare_v5(base, base) == []
    cases = [("header", name) for name in HEADER_FIELDS]
    cases += [("record", name) for name in RECORD_FIELDS]
    cases += [("frame", name) for name in ("time_ns", "source", "source_port", "payload_length")]
    for part, name in cases:
        problems = compare_v5(base, mutated(base, 1, part, name, record=2))
        assert len(problems) == 1, (part, name, problems)
        assert name in problems[0], (part, name, problems)
        if part == "record":
            assert "record 2" in problems[0]
    # a record or a datagram missing on one side
    fewer = list(base)
    fewer[0] = replace(fewer[0], records=fewer[0].records[:-1])
    assert any("record count" in p for p in compare_v5(base, fewer))
    assert any("datagram count" in p for p in compare_v5(base, base[1:]))


def test_flow_comparer_detects_a_changed_column(tmp_path):
    got = _sample_datagrams(tmp_path)
    assert compare_flows(got.datagrams, got) == []
    got.flows.octet_delta_count[5] += 1
    problems = compare_flows(got.datagrams, got)
    assert len(problems) == 1 and "flow 5: octet_delta_count" in problems[0]
    got.flows.octet_delta_count[5] -= 1
    got.flows.flow_start_milliseconds[7] -= 1
    assert compare_flows(got.datagrams, got) == [
        f"flow 7: flow_start_milliseconds: expected {got.flows.flow_start_milliseconds[7] + 1}, "
        f"egress {got.flows.flow_start_milliseconds[7]}"
    ]


# --- generated captures ---------------------------------------------------------------------

LINKS = [
    pytest.param(1, False, id="ethernet-pcap"),
    pytest.param(101, False, id="rawip-pcap"),
    pytest.param(113, False, id="sll-pcap"),
    pytest.param(1, True, id="ethernet-pcapng"),
    pytest.param(101, True, id="rawip-pcapng"),
    pytest.param(113, True, id="sll-pcapng"),
]


@pytest.mark.parametrize(("linktype", "pcapng"), LINKS)
def test_generated_capture_agrees_with_tshark(tmp_path, linktype, pcapng):
    _needs_tshark()
    scenario = v5_scenario(
        tmp_path,
        members=8,
        spec=TrafficSpec(flows=240, seed=11 + linktype),
        linktype=linktype,
        pcapng=pcapng,
    )
    expected, got = assert_agree(scenario.capture)
    assert len(expected.datagrams) == scenario.datagrams
    assert expected.records == len(scenario.flows) == 240
    assert +got.dropped == {}
    # the default scenario has a 1:10 sampling exporter whose uptime wraps
    assert {d.header["sampling_interval"] for d in expected.datagrams} == {0, (1 << 14) | 10}


def test_generated_ipv6_transport_agrees_with_tshark(tmp_path):
    _needs_tshark()
    start = TrafficSpec().start_ms
    exporters = [
        V5Exporter("2001:db8:0:1::10", sampling_interval=1, boot_ms=start - 3_600_000),
        V5Exporter("192.0.2.11", sampling_interval=100, boot_ms=start + 4 * 3_600_000 - (1 << 32)),
    ]
    scenario = v5_scenario(
        tmp_path,
        members=5,
        spec=TrafficSpec(flows=180, seed=5),
        exporters=exporters,
        linktype=113,
        pcapng=True,
    )
    expected, _ = assert_agree(scenario.capture)
    assert {d.source for d in expected.datagrams} == {"2001:db8:0:1::10", "192.0.2.11"}
    # the uptime wraps 4 h into the 6 h capture: sys_uptime both near 2**32 and small
    uptimes = [d.header["sys_uptime"] for d in expected.datagrams if d.source == "192.0.2.11"]
    assert min(uptimes) < 1 << 31 < max(uptimes)


def _random_v5(rng: np.random.Generator, count: int, *, trailing: int = 0) -> bytes:
    """A v5 datagram whose header fields (but version and count) and records are random."""
    u32 = [int(x) for x in rng.integers(0, 1 << 32, 4, dtype=np.uint64)]
    u8 = [int(x) for x in rng.integers(0, 256, 2)]
    header = struct.pack("!HHIIIIBBH", 5, count, *u32, *u8, int(rng.integers(0, 1 << 16)))
    return header + rng.bytes(48 * count) + rng.bytes(trailing)


def test_random_field_values_agree_with_tshark(tmp_path):
    """Every header and record field random (no constant zeros): all bytes land right.

    One datagram carries 7 trailing bytes after its records: both tshark and egress decode
    the ``count`` records and ignore the rest.
    """
    _needs_tshark()
    rng = np.random.default_rng(20260501)
    sources = ["192.0.2.20", "198.51.100.7", "2001:db8::20"]
    datagrams = []
    for i in range(14):
        count = 30 if i == 0 else 1 if i == 1 else int(rng.integers(1, 31))
        payload = _random_v5(rng, count, trailing=7 if i == 3 else 0)
        datagrams.append(
            Datagram(
                time_ns=1_780_000_000_123_456_789 + i * 1_000_003,
                source=sources[i % 3],
                payload=payload,
                source_port=int(rng.integers(1024, 65536)),
            )
        )
    path = tmp_path / "random.pcapng"
    write_capture(path, datagrams, linktype=1, pcapng=True)
    expected, _ = assert_agree(path)
    assert len(expected.datagrams) == 14
    assert (
        expected.datagrams[3].payload_length == 24 + 48 * expected.datagrams[3].header["count"] + 7
    )
    for name in RECORD_FIELDS:  # random bytes: no field is all zero
        assert any(r[name] for d in expected.datagrams for r in d.records), name


def test_generated_corrupt_datagrams_egress_is_stricter(tmp_path):
    """What each decoder does with corrupt v5 headers (one frame per case).

    tshark shows whatever fits; egress drops the whole datagram and counts why, because a
    header that lies about its count makes every record of the datagram suspect:
    - count 0: tshark flags "FlowSets impossible" (Warning/Malformed), no record;
    - count 31 (> 30, the v5 maximum) with 31 records present: tshark decodes 31;
    - count 5 with 4 records present (+ 20 stray bytes or none): tshark decodes 4, silently.
    """
    _needs_tshark()
    rng = np.random.default_rng(9)
    good = _random_v5(rng, 2)
    cases = [
        _random_v5(rng, 0),
        _random_v5(rng, 31),
        _random_v5(rng, 5)[: 24 + 48 * 4],
        _random_v5(rng, 5)[: 24 + 48 * 4 + 20],
        good,
    ]
    path = tmp_path / "corrupt.pcap"
    write_capture(
        path,
        [Datagram(1_780_000_000_000_000_000 + i, "192.0.2.30", p) for i, p in enumerate(cases)],
    )
    expected = oracle(path)
    counts = [(d.header["count"], len(d.records)) for d in expected.datagrams]
    assert counts == [(0, 0), (31, 31), (5, 4), (5, 4), (2, 2)]
    assert any("FlowSets impossible" in e for e in expected.datagrams[0].expert)
    assert [bool(d.expert) or d.malformed for d in expected.datagrams] == [True] + [False] * 4

    got = egress_v5(path)  # never raises
    assert got.dropped == {"v5_bad_count": 2, "v5_truncated": 2}
    assert compare_v5(expected.datagrams[4:], got.datagrams) == []
    assert len(got.flows) == 2


# --- the shared corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("name", AGREEING or _ABSENT)
def test_corpus_capture_agrees_with_tshark(captures_dir, name):
    _needs_tshark()
    path = _corpus_file(captures_dir, name)
    expected, got = assert_agree(path, DECODE_AS.get(name, ()))
    if name in MANIFEST_V5:  # the manifest's record count came from tshark too
        assert expected.records == MANIFEST_V5[name]
    if name == MIXED_SFLOW:
        # 5 NetFlow v5 datagrams (7 records) among 25 sFlow ones; egress decodes the v5 ones
        # and counts the sFlow ones (version word 0x0000) as unknown, never as v5.
        assert (len(expected.datagrams), expected.records) == (5, 7)
        assert expected.frames == 30
        assert got.dropped == {"unknown_version": 25}
    else:
        assert +got.dropped == {}


@pytest.mark.parametrize("name", sorted(CORRUPT_COUNT) if MANIFEST_V5 else _ABSENT)
def test_corpus_corrupt_count_is_dropped(captures_dir, name):
    """A header whose count is impossible (55582, 163) with 30 records present.

    tshark decodes the 30 records that fit, with no malformed flag or expert info (it
    stops at the end of the data). egress drops the datagram and counts ``v5_bad_count``:
    a header that lies about its count cannot be trusted, and the records show it
    (in invalid_02 the last one claims 2,399,141,889 packets and a non-zero padding).
    """
    _needs_tshark()
    path = _corpus_file(captures_dir, name)
    expected = oracle(path)
    assert len(expected.datagrams) == 1
    bogus = expected.datagrams[0]
    assert bogus.header["count"] == CORRUPT_COUNT[name]
    assert len(bogus.records) == 30 and bogus.payload_length == 24 + 30 * 48
    assert not bogus.malformed and bogus.expert == ()

    got = egress_v5(path)  # does not raise
    assert got.datagrams == [] and len(got.flows) == 0
    assert +got.v5_errors == {"v5_bad_count": 1}
    assert +got.dropped == {"v5_bad_count": 1}


def test_corpus_v5_list_is_complete(captures_dir):
    """Every corpus capture in which egress finds a v5 datagram is compared above."""
    assert MANIFEST_V5, f"no NetFlow v5 row parsed from {captures_dir / 'MANIFEST.md'}"
    found = set()
    for path in sorted(captures_dir.rglob("*")):
        if path.suffix not in (".pcap", ".pcapng"):
            continue
        try:
            batches = list(read_datagrams(path))
        except CaptureError:
            continue
        for batch in batches:
            first = np.where(batch.lengths >= 2, batch.offsets, 0)
            version = (batch.buffer[first].astype(np.int64) << 8) | batch.buffer[first + 1]
            if ((batch.lengths >= 2) & (version == 5)).any():
                found.add(path.relative_to(captures_dir).as_posix())
    assert found == set(AGREEING) | set(CORRUPT_COUNT)
