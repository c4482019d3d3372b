"""A real exporter: softflowd reads a synthetic raw-traffic pcap and exports NetFlow v5, v9
and IPFIX to a UDP listener on 127.0.0.1 run by this test; the datagrams are recorded into a
pcap. egress's per-member totals must equal those of the same export decoded independently
by tshark (pyshark), and — softflowd counting IP bytes here (no frame is short enough for
Ethernet padding) — the totals of the raw traffic itself.

softflowd flags (see ../shared/THIRD-PARTY-TOOLS.md): ``-r`` file input needs ``-a`` (boot
time from the capture, else flow times wrap), ``-A milli`` gives absolute milliseconds in
v9/IPFIX. v5 cannot carry IPv6: the v5 run compares IPv4 members only.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from flow_builders import decode_and_attribute

from collector.synth.model import make_members
from collector.synth.pcapwriter import Datagram, write_capture

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd not installed"),
]
SOFTFLOWD = shutil.which("softflowd") or "/usr/sbin/softflowd"
START_S = 1_793_833_200


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(src: str, dst: str, sport: int, dport: int, proto: int, payload: int) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    l4 = (
        struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
        if proto == 6
        else struct.pack("!HHHH", sport, dport, 8 + payload, 0)
    ) + b"x" * payload
    if s.version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, s.packed, d.packed
        )
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00" + ip + l4
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, s.packed, d.packed)
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x86\xdd" + ip + l4


def raw_traffic(path: Path, members, *, seed: int = 4, flows: int = 120, ipv6: bool = True):
    """A raw pcap of TCP/UDP conversations; returns the true IP bytes per (member, dir)."""
    rng = np.random.default_rng(seed)
    truth: Counter = Counter()
    packets = []
    for k in range(flows):
        m = int(rng.integers(0, len(members)))
        v6 = ipv6 and rng.random() < 0.3
        if v6:
            local = f"2001:db8:{m:x}::{int(rng.integers(1, 1000)):x}"
            remote = f"2a00:1450::{int(rng.integers(1, 1000)):x}"
        else:
            local = str(ipaddress.IPv4Address((10 << 24) | (m << 10) | int(rng.integers(1, 700))))
            remote = str(ipaddress.IPv4Address(int(rng.integers(11 << 24, 126 << 24))))
        upload = rng.random() < 0.4
        src, dst = (local, remote) if upload else (remote, local)
        proto = 6 if rng.random() < 0.7 else 17
        sport, dport = 1024 + k, 443
        t0 = START_S * 1_000_000 + int(rng.integers(0, 1200)) * 1_000_000
        for p in range(int(rng.integers(1, 25))):
            payload = int(rng.integers(40, 1400))
            frame = _frame(src, dst, sport, dport, proto, payload)
            packets.append((t0 + p * 200_000, frame))
            truth[(m, 1 if upload else 0)] += len(frame) - 14
    packets.sort(key=lambda x: x[0])
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t_us, frame in packets:
            f.write(
                struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(frame), len(frame))
            )
            f.write(frame)
    return truth


def export_with_softflowd(raw: Path, out: Path, version: int, tmp: Path) -> int:
    """Run softflowd on ``raw`` exporting to a local listener; write the datagrams to ``out``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.settimeout(0.2)
    received: list[tuple[int, bytes, int]] = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            received.append((time.time_ns(), data, addr[1]))

    thread = threading.Thread(target=listen)
    thread.start()
    try:
        subprocess.run(
            [SOFTFLOWD, "-r", str(raw), "-n", f"127.0.0.1:{port}", "-v", str(version), "-a",
             "-A", "milli", "-p", str(tmp / f"sf{version}.pid")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
        sock.close()
    write_capture(
        out,
        [Datagram(t, "127.0.0.1", d, sp, port) for t, d, sp in received],
    )
    return port


def member_of(address: str, networks) -> int:
    a = ipaddress.ip_address(address)
    best, best_len = -1, -1
    for net, row in networks:
        if a.version == net.version and a in net and net.prefixlen > best_len:
            best, best_len = row, net.prefixlen
    return best


def tshark_totals(capture: Path, port: int, members) -> Counter:
    """Per (member, direction) octets from tshark's own dissection of the export."""
    import pyshark

    networks = [(ipaddress.ip_network(p), i) for i, m in enumerate(members) for p in m.prefixes]
    totals: Counter = Counter()
    cap = pyshark.FileCapture(
        str(capture), keep_packets=False, decode_as={f"udp.port=={port}": "cflow"}
    )
    try:
        for pkt in cap:
            if not hasattr(pkt, "cflow"):
                continue
            layer = pkt.cflow
            # Records of both families may share a packet: walk them in order.
            v4s, v4d = _shows(layer, "srcaddr"), _shows(layer, "dstaddr")
            v6s, v6d = _shows(layer, "srcaddrv6"), _shows(layer, "dstaddrv6")
            octets = [int(x) for x in _shows(layer, "octets")]
            pairs = list(zip(v4s, v4d, strict=True)) + list(zip(v6s, v6d, strict=True))
            assert len(pairs) == len(octets), "one octet count per record"
            for (s, d), o in zip(_record_order(layer, pairs), octets, strict=True):
                ms, md = member_of(s, networks), member_of(d, networks)
                if ms >= 0 and md < 0:
                    totals[(ms, 1)] += o
                elif md >= 0 and ms < 0:
                    totals[(md, 0)] += o
    finally:
        cap.close()
    return +totals


def _shows(layer, name: str) -> list[str]:
    field = layer.get_field(name)
    return [f.show for f in field.all_fields] if field is not None else []


def _record_order(layer, pairs):
    """tshark lists each field in record order; a packet mixing IPv4 and IPv6 records (v9 and
    IPFIX data sets of two templates) lists the IPv4 set first only if it came first. Order the
    address pairs by the position of the records' first field in the layer."""
    fields = []
    for name in ("srcaddr", "srcaddrv6"):
        f = layer.get_field(name)
        if f is not None:
            fields += [(int(x.pos), name) for x in f.all_fields]
    fields.sort()
    v4 = iter([p for p in pairs if ":" not in p[0]])
    v6 = iter([p for p in pairs if ":" in p[0]])
    return [next(v6) if name == "srcaddrv6" else next(v4) for _pos, name in fields]


def egress_totals(capture: Path, members) -> tuple[Counter, Counter]:
    got, _notes, dropped, _flows = decode_and_attribute(capture, members)
    totals: Counter = Counter()
    for (owner, _bin, direction), b in got.items():
        if owner >= 0:
            totals[(owner, direction)] += b
    return +totals, dropped


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("softflowd")
    members = make_members(8, ipv6=True)
    raw = tmp / "raw.pcap"
    truth = raw_traffic(raw, members)
    raw4 = tmp / "raw4.pcap"
    truth4 = raw_traffic(raw4, members, ipv6=False)
    return tmp, members, raw, truth, raw4, truth4


@pytest.mark.parametrize("version", [5, 9, 10])
def test_softflowd_export_totals_agree(traffic, version):
    tmp, members, raw, truth, raw4, truth4 = traffic
    source, expected = (raw4, truth4) if version == 5 else (raw, truth)
    capture = tmp / f"export-v{version}.pcap"
    port = export_with_softflowd(source, capture, version, tmp)
    mine, dropped = egress_totals(capture, members)
    theirs = tshark_totals(capture, port, members)
    assert mine == theirs
    assert mine == +expected
    assert not dropped
