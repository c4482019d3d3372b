"""The benchmark suite's own tools: the C sender and its stream files.

The sender must send exactly what it is asked, from one loopback address per exporter,
and keep sequence numbers consecutive when it loops over a file (NetFlow v5: records;
IPFIX: data records), or the live benchmark would judge receivers on false sequence gaps.
"""

from __future__ import annotations

import shutil
import socket
import struct

import numpy as np
import pytest

from benchmarks.stream import read_pcap_udp, send, write_stream
from collector.synth.model import TrafficSpec, generate_flows, make_members
from collector.synth.netflow5 import V5Exporter, encode_v5
from collector.synth.pcapwriter import write_capture

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    return sock


def _receive(sock: socket.socket, n: int) -> list[tuple[str, bytes]]:
    return [(addr[0], data) for data, addr in (sock.recvfrom(65535) for _ in range(n))]


def _flows(n: int):
    members = make_members(5, ipv6=False)
    return generate_flows(members, TrafficSpec(seed=2, flows=n, exporters=2))


def test_v5_loops_keep_sequence_numbers_consecutive(tmp_path):
    flows = _flows(400)
    start = TrafficSpec().start_ms
    datagrams = encode_v5(
        flows, [V5Exporter("192.0.2.10", 1, start), V5Exporter("192.0.2.11", 1, start)]
    )
    stream = write_stream(
        tmp_path / "s.bin", [d.source for d in datagrams], [d.payload for d in datagrams]
    )
    assert stream.flows == 400 and stream.exporters == ("127.0.0.10", "127.0.0.11")
    sock = _listen()
    count = 2 * len(datagrams) + 3
    report = send(stream, sock.getsockname()[1], rate=20_000, count=count, cpu=None)
    got = _receive(sock, count)
    sock.close()
    assert report["datagrams"] == count and report["loops"] == 2 and report["position"] == 3
    expected_seq = {"127.0.0.10": 0, "127.0.0.11": 0}
    for source, payload in got:
        n = struct.unpack_from("!H", payload, 2)[0]
        assert struct.unpack_from("!I", payload, 16)[0] == expected_seq[source]
        expected_seq[source] += n
    assert (
        sum(expected_seq.values())
        == report["records"]
        == 2 * 400 + sum(struct.unpack_from("!H", d.payload, 2)[0] for d in datagrams[:3])
    )
    # The first pass sends the file's bytes unchanged.
    assert [p for _s, p in got[: len(datagrams)]] == [d.payload for d in datagrams]


def test_ipfix_sequence_counts_data_records_and_pcap_round_trip(tmp_path):
    from collector.synth.ipfix import encode_ipfix
    from collector.synth.netflow9 import TemplatedExporter

    flows = _flows(300)
    flows.exporter[:] = 0
    ex = TemplatedExporter("192.0.2.20", domain=3, layout="a", time_mode="ms", template_every=4)
    datagrams = encode_ipfix(flows, [ex])
    capture = tmp_path / "ipfix.pcap"
    write_capture(capture, datagrams)
    rows = read_pcap_udp(capture)
    assert [r[2] for r in rows] == [d.payload for d in datagrams]
    stream = write_stream(tmp_path / "s.bin", [r[1] for r in rows], [r[2] for r in rows])
    assert stream.flows == 300
    sock = _listen()
    count = 3 * len(datagrams)
    send(stream, sock.getsockname()[1], rate=0, count=count, cpu=None)
    got = _receive(sock, count)
    sock.close()
    seqs = np.array([struct.unpack_from("!I", p, 8)[0] for _s, p in got])
    records = np.diff(seqs)
    per_message = np.array(
        [
            struct.unpack_from("!I", datagrams[i + 1].payload, 8)[0]
            for i in range(len(datagrams) - 1)
        ]
    ) - np.array([struct.unpack_from("!I", d.payload, 8)[0] for d in datagrams[:-1]])
    # Within each pass the file's own differences; across the wrap, the last message's count.
    assert list(records[: len(datagrams) - 1]) == list(per_message)
    assert seqs[len(datagrams)] - seqs[len(datagrams) - 1] == 300 - per_message.sum()
    assert seqs[-1] == 3 * 300 - (300 - per_message.sum())
