"""Export captures made by real exporters from a synthetic raw-traffic pcap.

A raw pcap of unidirectional TCP/UDP conversations (members' hosts with internet hosts,
member to member, and stray hosts in no member prefix; 30 % IPv6; conversations lasting
up to 10 minutes, so flows span 5-minute bins) is read by

- softflowd: ``softflowd -r raw.pcap -n 127.0.0.1:PORT -v 5|9|10 -a -A milli -d``;
- pmacctd with its nfprobe plugin (``pcap_savefile``, ``nfprobe_version 5|9|10``),

which export to a UDP listener on 127.0.0.1 run here; the datagrams it receives are
written to a capture. The ground truth is the raw traffic's IP bytes per member and
direction (every frame is long enough to carry no Ethernet padding, so softflowd's
frame-based count equals the IP length). NetFlow v5 cannot carry IPv6: its truth counts
IPv4 only.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import WORK_DIR
from benchmarks.corpora import (
    START_MS,
    Replay,
    _done,
    _fresh,
    _save_replay,
    egress_config,
    load_replay,
    normalise,
)
from collector.synth.model import (
    DIR_IN,
    DIR_NONE,
    DIR_OUT,
    OWNER_INTERNAL,
    OWNER_UNATTRIBUTED,
    SynthMember,
    make_members,
)
from collector.synth.pcapwriter import Datagram, write_capture

ETH_V4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
ETH_V6 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x86\xdd"


def _ipv4_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0x4000, 64, proto, 0, src, dst)
    words = struct.unpack("!10H", head)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return head[:10] + struct.pack("!H", ~total & 0xFFFF) + head[12:]


def _packet(src, dst, sport: int, dport: int, proto: int, ip_length: int) -> bytes:
    """An Ethernet frame whose IP packet is ``ip_length`` bytes long (L4 checksum 0)."""
    v6 = src.version == 6
    l4_len = ip_length - (40 if v6 else 20)
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, l4_len, 0)
    l4 += bytes(l4_len - len(l4))
    if v6:
        return (
            ETH_V6 + struct.pack("!IHBB", 6 << 28, l4_len, proto, 64) + src.packed + dst.packed + l4
        )
    return ETH_V4 + _ipv4_header(src.packed, dst.packed, proto, ip_length) + l4


def raw_traffic(
    path: Path, members: list[SynthMember], *, conversations: int, seed: int
) -> tuple[dict, dict]:
    """Write the raw pcap; return (truth, IPv4-only truth) as (owner, direction) -> bytes."""
    rng = np.random.default_rng(seed)
    m = len(members)
    truth: dict = {}
    truth4: dict = {}
    packets: list[tuple[int, bytes]] = []
    for k in range(conversations):
        kind = rng.random()
        v6 = rng.random() < 0.3 and kind >= 0.1
        member = int(rng.integers(0, m))
        upload = rng.random() < 0.4
        if v6:
            local = ipaddress.IPv6Address(
                (0x20010DB8 << 96) | (member << 80) | int(rng.integers(1, 1 << 40))
            )
            remote = ipaddress.IPv6Address((0x2A00 << 112) | int(rng.integers(1, 1 << 60)))
        else:
            local = ipaddress.IPv4Address(
                (10 << 24) | (member << 10) | int(rng.integers(1, 3 * 256 - 1))
            )
            remote = ipaddress.IPv4Address(int(rng.integers(11 << 24, 127 << 24)))
        if kind < 0.05:  # member to member
            peer = int(rng.integers(0, m))
            other = ipaddress.IPv4Address(
                (10 << 24) | (peer << 10) | int(rng.integers(1, 3 * 256 - 1))
            )
            src, dst, owner, direction = local, other, OWNER_INTERNAL, DIR_NONE
        elif kind < 0.1:  # a stray host, in no member prefix
            stray = ipaddress.IPv4Address((192 << 24) | (168 << 16) | int(rng.integers(1, 65535)))
            src, dst = (stray, remote) if upload else (remote, stray)
            owner, direction = OWNER_UNATTRIBUTED, DIR_NONE
        else:
            src, dst = (local, remote) if upload else (remote, local)
            owner, direction = member, (DIR_OUT if upload else DIR_IN)
        proto = 6 if rng.random() < 0.7 else 17
        sport, dport = 1024 + k % 60000, 443 if proto == 6 else 53
        start_us = START_MS * 1000 + int(rng.integers(0, 20 * 60 * 1_000_000))
        span_us = int(rng.integers(0, 10 * 60 * 1_000_000)) if rng.random() < 0.3 else 0
        n = int(rng.integers(1, 40))
        sizes = rng.integers(64, 1500, n)
        times = np.sort(rng.integers(0, span_us + 1, n)) + start_us
        for size, t in zip(sizes.tolist(), times.tolist(), strict=True):
            packets.append((t, _packet(src, dst, sport, dport, proto, size)))
        volume = int(sizes.sum())
        truth[(owner, direction)] = truth.get((owner, direction), 0) + volume
        if not v6:
            truth4[(owner, direction)] = truth4.get((owner, direction), 0) + volume
    packets.sort(key=lambda p: p[0])
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, frame in packets:
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
            f.write(frame)
    return normalise(truth), normalise(truth4)


class Recorder:
    """A UDP listener on 127.0.0.1 recording every datagram it gets, with arrival time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 * 1024 * 1024)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self.received: list[tuple[int, str, int, bytes]] = []
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, (host, port) = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received.append((time.time_ns(), host, port, data))
            self.last = time.monotonic()

    def finish(self, quiet_seconds: float = 1.0) -> None:
        while time.monotonic() - self.last < quiet_seconds:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def write(self, path: Path) -> int:
        return write_capture(
            path, [Datagram(t, h, d, p, self.port) for t, h, p, d in self.received]
        )


def _softflowd(raw: Path, port: int, version: int, workdir: Path) -> list[str]:
    return [
        "softflowd", "-r", str(raw), "-n", f"127.0.0.1:{port}", "-v", str(version),
        "-a", "-A", "milli", "-d", "-m", "65536", "-p", str(workdir / "softflowd.pid"),
    ]  # fmt: skip


def _pmacctd(raw: Path, port: int, version: int, workdir: Path) -> list[str]:
    conf = workdir / f"pmacctd-v{version}.conf"
    conf.write_text(
        "\n".join(
            [
                "daemonize: false",
                f"logfile: {workdir / 'pmacctd.log'}",
                f"pcap_savefile: {raw}",
                "plugins: nfprobe[np]",
                f"nfprobe_receiver[np]: 127.0.0.1:{port}",
                f"nfprobe_version[np]: {version}",
                "nfprobe_maxflows[np]: 65536",
                "aggregate[np]: src_host, dst_host, src_port, dst_port, proto, tos",
            ]
        )
        + "\n"
    )
    return ["pmacctd", "-f", str(conf)]


EXPORTERS = {"softflowd": _softflowd, "pmacctd": _pmacctd}
VERSION_NAME = {5: "v5", 9: "v9", 10: "ipfix"}


def exporter_available(exporter: str) -> str | None:
    return None if shutil.which(exporter) else f"{exporter} is not installed"


def exporter_version(exporter: str) -> str:
    import re

    cmd = ["softflowd", "-h"] if exporter == "softflowd" else ["pmacctd", "-V"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return exporter
    found = re.search(r"(softflowd|pmacctd)(?: version)? (\d[\w.+-]*)", out.stdout + out.stderr)
    return f"{found.group(1)} {found.group(2).rstrip('.')}" if found else exporter


def exporter_replay(
    exporter: str, version: int, conversations: int, members: int = 30, seed: int = 8
) -> Replay:
    """The export of ``exporter`` (softflowd | pmacctd) in NetFlow ``version`` (5, 9, 10)
    of the synthetic raw pcap, recorded into a capture, with its truth."""
    name = f"{exporter}-{VERSION_NAME[version]}"
    directory = WORK_DIR / f"capture-{name}-{conversations}-{members}-{seed}"
    params = {"exporter": exporter, "version": version, "n": conversations, "m": members, "v": 3}
    if _fresh(directory, params):
        return load_replay(directory)
    directory.mkdir(parents=True, exist_ok=True)
    member_list = make_members(members, ipv6=True)
    raw = directory / "raw.pcap"
    truth, truth4 = raw_traffic(raw, member_list, conversations=conversations, seed=seed)
    recorder = Recorder()
    log = (directory / "exporter.log").open("wb")
    try:
        proc = subprocess.run(
            EXPORTERS[exporter](raw, recorder.port, version, directory),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
    finally:
        log.close()
        recorder.finish()
    if proc.returncode != 0:
        raise RuntimeError(f"{exporter} exited with {proc.returncode}; see {directory}")
    capture = directory / "exports.pcap"
    recorder.write(capture)
    if not recorder.received:
        raise RuntimeError(f"{exporter} exported nothing; see {directory}")
    config = directory / "egress.toml"
    config.write_text(egress_config(member_list, directory / "egress.duckdb", ["127.0.0.1"]))
    ipv6 = version != 5
    replay = Replay(
        name,
        directory,
        capture,
        config,
        member_list,
        truth if ipv6 else truth4,
        f"{exporter_version(exporter)} exporting {'IPFIX' if version == 10 else f'NetFlow v{version}'} "
        f"from a raw pcap of {conversations:,} conversations"
        + ("" if ipv6 else " (IPv4 only: v5 carries no IPv6)"),
        ipv6,
        len(recorder.received),
    )
    _save_replay(directory, replay)
    (directory / "stream.bin").unlink(missing_ok=True)
    _done(directory, params)
    return replay
