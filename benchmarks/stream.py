"""Export datagrams as a *stream file* for the paced C sender (benchmarks/sender.c).

A stream file holds the UDP payloads of a capture in order, each with its exporter
(sent from its own loopback address 127.0.0.N), its protocol, the number of records its
sequence number counts and the number of flow records it carries:

    b"EGSTRM01", u32 datagrams, u32 exporters, u32 streams      (little-endian)
    u32 exporter address[exporters]                              (IPv4, host order)
    per datagram: u32 len, u32 records, u32 flows, u16 exporter, u16 stream, u8 kind,
                  3 pad bytes, then len payload bytes

The captures are read here with a small pcap reader of our own (not egress's), so the
peers are fed bytes that egress's reader did not touch. Record counts come from the
headers (v5), from a walk of the sets with the templates seen in the file (v9/IPFIX),
and for IPFIX sequence numbers from the file's own sequence differences where there is a
next message (so an exporter's own sequence habits are replayed as they were).

The sender is compiled on first use into benchmarks/work/ and pinned to a core.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import BENCH_DIR, WORK_DIR

MAGIC = b"EGSTRM01"
ENTRY = struct.Struct("<IIIHHB3x")
SENDER_SOURCE = BENCH_DIR / "sender.c"
SENDER_BINARY = WORK_DIR / "sender"
FIRST_EXPORTER = 10  # exporters are sent from 127.0.0.10, .11, ...


def loopback_exporter(k: int) -> str:
    return f"127.0.0.{FIRST_EXPORTER + k}"


@dataclass(frozen=True)
class StreamFile:
    path: Path
    datagrams: int
    flows: int  # flow records in one pass over the file
    exporters: tuple[str, ...]  # loopback source address of each exporter
    originals: tuple[str, ...]  # the capture's exporter address each one stands for


# -- a small independent pcap reader (classic pcap; Ethernet, raw IP, Linux SLL) ---------


def read_pcap_udp(path: Path | str) -> list[tuple[int, str, bytes]]:
    """(capture time ns, source address, UDP payload) of every UDP datagram in a pcap."""
    data = Path(path).read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    record = struct.Struct(endian + "IIII")
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _len = record.unpack_from(data, pos)
        pos += 16
        frame = data[pos : pos + caplen]
        pos += caplen
        t = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        if linktype == 1:
            ethertype = struct.unpack_from("!H", frame, 12)[0]
            ip = frame[14:]
            while ethertype == 0x8100:
                ethertype = struct.unpack_from("!H", ip, 2)[0]
                ip = ip[4:]
        elif linktype == 113:
            ethertype = struct.unpack_from("!H", frame, 14)[0]
            ip = frame[16:]
        elif linktype in (101, 12, 14):
            ethertype = 0x0800 if frame[0] >> 4 == 4 else 0x86DD
            ip = frame
        else:
            raise ValueError(f"{path}: link type {linktype} not handled")
        if ethertype == 0x0800 and len(ip) >= 28 and ip[9] == 17:
            ihl = (ip[0] & 15) * 4
            total = struct.unpack_from("!H", ip, 2)[0]
            src = str(ipaddress.IPv4Address(ip[12:16]))
            udp = ip[ihl:total]
        elif ethertype == 0x86DD and len(ip) >= 48 and ip[6] == 17:
            plen = struct.unpack_from("!H", ip, 4)[0]
            src = str(ipaddress.IPv6Address(ip[8:24]))
            udp = ip[40 : 40 + plen]
        else:
            continue
        out.append((t, src, bytes(udp[8:])))
    return out


# -- record counting ----------------------------------------------------------------------


class _TemplateBook:
    """Templates per (exporter, version, domain, template id): record length and whether
    the records are options data. Variable-length fields give length None."""

    def __init__(self) -> None:
        self.known: dict[tuple, tuple[list[int], bool]] = {}

    def learn(self, key: tuple, payload: bytes, version: int, offset: int, end: int) -> None:
        while offset + 4 <= end:
            set_id, length = struct.unpack_from("!HH", payload, offset)
            if length < 4 or offset + length > end:
                return
            body, stop = offset + 4, offset + length
            if (version == 10 and set_id in (2, 3)) or (version == 9 and set_id in (0, 1)):
                self._templates(key, payload, version, set_id, body, stop)
            offset = stop

    def _templates(self, key, payload, version, set_id, pos, stop) -> None:
        options = set_id in (1, 3)
        while pos + 4 <= stop:
            if version == 9 and options:
                if pos + 6 > stop:
                    return
                tid, scope_len, opt_len = struct.unpack_from("!HHH", payload, pos)
                pos += 6
                lengths = []
                for _ in range((scope_len + opt_len) // 4):
                    lengths.append(struct.unpack_from("!HH", payload, pos)[1])
                    pos += 4
                self.known[(*key, tid)] = (lengths, True)
                return  # v9 options templates are padded: one per set here
            tid, count = struct.unpack_from("!HH", payload, pos)
            pos += 4
            if options:
                if count == 0:
                    continue
                pos += 2  # scope field count
            lengths = []
            for _ in range(count):
                element, length = struct.unpack_from("!HH", payload, pos)
                pos += 4
                if version == 10 and element & 0x8000:
                    pos += 4  # enterprise number
                lengths.append(length)
            if count:
                self.known[(*key, tid)] = (lengths, options)
            if tid == 0 and count == 0:
                return

    def count(self, key: tuple, payload: bytes, version: int, offset: int, end: int):
        """(data records, flow records) of a message's data sets; None where unknown."""
        records = flows = 0
        complete = True
        while offset + 4 <= end:
            set_id, length = struct.unpack_from("!HH", payload, offset)
            if length < 4 or offset + length > end:
                break
            if set_id >= 256:
                tpl = self.known.get((*key, set_id))
                if tpl is None:
                    complete = False
                else:
                    n = _records_in(payload, offset + 4, offset + length, tpl[0])
                    records += n
                    if not tpl[1]:
                        flows += n
            offset += length
        return (records, flows) if complete else (None, None)


def _records_in(payload: bytes, pos: int, stop: int, lengths: list[int]) -> int:
    fixed = sum(lengths)
    if 65535 not in lengths:
        return (stop - pos) // fixed if fixed else 0
    n = 0
    while pos < stop:
        start = pos
        for length in lengths:
            if length == 65535:
                if pos >= stop:
                    return n
                length = payload[pos]
                pos += 1
                if length == 255:
                    length = struct.unpack_from("!H", payload, pos)[0]
                    pos += 2
            pos += length
        if pos > stop or pos == start:
            break
        n += 1
    return n


def describe(datagrams: list[tuple[int, bytes]]) -> list[tuple[int, int, int, int, tuple]]:
    """(kind, seq, records, flows, stream key) per (exporter index, payload)."""
    book = _TemplateBook()
    # First pass: every template of the file, so data sent before its template is counted.
    for ex, p in datagrams:
        version = struct.unpack_from("!H", p, 0)[0]
        if version == 10:
            book.learn((ex, 10, struct.unpack_from("!I", p, 12)[0]), p, 10, 16, len(p))
        elif version == 9:
            book.learn((ex, 9, struct.unpack_from("!I", p, 16)[0]), p, 9, 20, len(p))
    out = []
    for ex, p in datagrams:
        version = struct.unpack_from("!H", p, 0)[0]
        if version == 5:
            count = struct.unpack_from("!H", p, 2)[0]
            seq = struct.unpack_from("!I", p, 16)[0]
            out.append((5, seq, count, count, (ex, 5, p[20], p[21])))
        elif version == 9:
            domain = struct.unpack_from("!I", p, 16)[0]
            key = (ex, 9, domain)
            _records, flows = book.count(key, p, 9, 20, len(p))
            seq = struct.unpack_from("!I", p, 12)[0]
            out.append((9, seq, 1, flows or 0, key))
        elif version == 10:
            domain = struct.unpack_from("!I", p, 12)[0]
            key = (ex, 10, domain)
            length = min(struct.unpack_from("!H", p, 2)[0], len(p))
            records, flows = book.count(key, p, 10, 16, length)
            seq = struct.unpack_from("!I", p, 8)[0]
            out.append((10, seq, records or 0, flows or 0, key))
        else:
            raise ValueError(f"datagram of version {version}: not an export")
    # IPFIX: the sequence difference to the stream's next message is what the exporter
    # counted (it may differ from our count, e.g. softflowd's off-by-one).
    last: dict[tuple, int] = {}
    for i, (kind, seq, _r, _f, key) in enumerate(out):
        if kind == 10:
            if key in last:
                j = last[key]
                k, s, _r2, f, kk = out[j]
                out[j] = (k, s, (seq - s) % (1 << 32), f, kk)
            last[key] = i
    return out


def write_stream(
    path: Path | str, sources: list[str], payloads: list[bytes], exporters: list[str] | None = None
) -> StreamFile:
    """Stream file of ``payloads`` sent by ``sources`` (original exporter addresses)."""
    originals = list(dict.fromkeys(exporters or sources))
    if len(originals) > 200:
        raise ValueError("at most 200 exporters")
    index = {a: k for k, a in enumerate(originals)}
    exs = [index[s] for s in sources]
    info = describe(list(zip(exs, payloads, strict=True)))
    streams: dict[tuple, int] = {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flows = 0
    with path.open("wb") as f:
        f.write(MAGIC + struct.pack("<III", len(payloads), len(originals), 0))
        for k in range(len(originals)):
            f.write(struct.pack("<I", int(ipaddress.IPv4Address(loopback_exporter(k)))))
        for ex, p, (kind, _seq, records, n_flows, key) in zip(exs, payloads, info, strict=True):
            sid = streams.setdefault(key, len(streams))
            f.write(ENTRY.pack(len(p), records, n_flows, ex, sid, kind))
            f.write(p)
            flows += n_flows
        f.seek(len(MAGIC) + 8)
        f.write(struct.pack("<I", len(streams)))
    stream = StreamFile(
        path,
        len(payloads),
        flows,
        tuple(loopback_exporter(k) for k in range(len(originals))),
        tuple(originals),
    )
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "datagrams": stream.datagrams,
                "flows": stream.flows,
                "exporters": stream.exporters,
                "originals": stream.originals,
            }
        )
    )
    return stream


def load_stream(path: Path | str) -> StreamFile:
    """A stream file written by :func:`write_stream` (from its JSON sidecar)."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    return StreamFile(
        path,
        meta["datagrams"],
        meta["flows"],
        tuple(meta["exporters"]),
        tuple(meta["originals"]),
    )


def stream_from_pcap(pcap: Path | str, path: Path | str) -> StreamFile:
    rows = read_pcap_udp(pcap)
    return write_stream(path, [r[1] for r in rows], [r[2] for r in rows])


# -- the sender ----------------------------------------------------------------------------


def sender_binary() -> Path:
    """Compile sender.c into benchmarks/work/ when it is newer than the binary."""
    if not SENDER_BINARY.exists() or SENDER_BINARY.stat().st_mtime < SENDER_SOURCE.stat().st_mtime:
        if shutil.which("gcc") is None:
            raise RuntimeError("gcc is needed to build benchmarks/sender.c")
        SENDER_BINARY.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(SENDER_BINARY), str(SENDER_SOURCE)],
            check=True,
        )
    return SENDER_BINARY


def sender_command(
    stream: StreamFile,
    port: int,
    *,
    rate: float = 0,
    seconds: float | None = None,
    count: int | None = None,
    host: str = "127.0.0.1",
    cpu: int | None = 0,
) -> list[str]:
    cmd = [str(sender_binary()), str(stream.path), str(port), "--host", host, "--rate", str(rate)]
    if seconds is not None:
        cmd += ["--seconds", str(seconds)]
    if count is not None:
        cmd += ["--count", str(count)]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    return cmd


def send(stream: StreamFile, port: int, **kwargs) -> dict:
    """Run the sender to completion; its JSON report."""
    out = subprocess.run(
        sender_command(stream, port, **kwargs), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"sender failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def expected_after(
    sent: dict, first_flow: np.ndarray, totals_of_prefix
) -> dict[tuple[int, int], int]:
    """Totals a receiver should have after the sender's report ``sent``: the whole file
    ``loops`` times plus the flows of the datagrams before ``position``.
    ``totals_of_prefix(k)`` gives the totals of the first k flows of the file."""
    loops, position = int(sent["loops"]), int(sent["position"])
    whole = totals_of_prefix(int(first_flow[-1]))
    part = totals_of_prefix(int(first_flow[position]))
    keys = set(whole) | set(part)
    return {k: loops * whole.get(k, 0) + part.get(k, 0) for k in keys}
