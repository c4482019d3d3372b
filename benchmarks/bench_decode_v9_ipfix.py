"""NetFlow v9 / IPFIX offline decode (+ attribute + bin) on one core, and the PyPI `netflow`
package on the same datagrams.

Datagrams are generated in memory (as PERFORMANCE-ANCHORS.md describes): 30 records per
datagram, the template resent every 100 datagrams, batches of 10,000 datagrams
(300,000 flows) handed to one long-lived Decoder; addresses from the synthetic traffic
model with 200 members (IPv4 and IPv6 /48s). Layouts:

- IPFIX fixed: 11 fields, 53-byte records (src/dst IPv4, octets/packets u64, start/end ms,
  ingress/egress, ports, protocol);
- v9 fixed: the same with 4-byte counters and sysUpTime times (41 bytes);
- IPFIX IPv6: IPv6 addresses instead (77 bytes);
- IPFIX variable-length: the 11 fields plus one variable-length string (interface name).

"decode" = Decoder.decode (headers, set walk, templates, records -> FlowBatch);
"decode+attribute" adds accounting.attribution.attribute (classify, sampling, bins).
Run: ``python -m benchmarks decode`` (``--quick`` for a short run); rewrites its RESULTS.md section.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.datagrams import DatagramBatch
from collector.synth.model import TrafficSpec, generate_flows, make_members

PER_DG = 30
TEMPLATE_EVERY = 100


def layouts():
    v4 = [
        (8, 4),
        (12, 4),
        (1, 8),
        (2, 8),
        (152, 8),
        (153, 8),
        (10, 4),
        (14, 4),
        (7, 2),
        (11, 2),
        (4, 1),
    ]
    v6 = [(27, 16), (28, 16), *v4[2:]]
    v9 = [
        (8, 4),
        (12, 4),
        (1, 4),
        (2, 4),
        (22, 4),
        (21, 4),
        (10, 4),
        (14, 4),
        (7, 2),
        (11, 2),
        (4, 1),
    ]
    var = [*v4, (82, 65535)]
    return {
        "ipfix-fixed": (10, v4),
        "v9-fixed": (9, v9),
        "ipfix-ipv6": (10, v6),
        "ipfix-varlen": (10, var),
    }


def records(layout, flows, sel, boot_ms):
    parts = []
    n = len(sel)
    cols = []
    for element, length in layout:
        if element == 8:
            v = flows.src4[sel].astype(">u4")
        elif element == 12:
            v = flows.dst4[sel].astype(">u4")
        elif element in (27, 28):
            a = flows.src6[sel] if element == 27 else flows.dst6[sel]
            v = a.astype(">u8").reshape(n, 2)
        elif element == 1:
            v = flows.octets[sel].astype(f">u{length}")
        elif element == 2:
            v = flows.packets[sel].astype(f">u{length}")
        elif element == 152:
            v = flows.start_ms[sel].astype(">u8")
        elif element == 153:
            v = flows.end_ms[sel].astype(">u8")
        elif element == 22:
            v = ((flows.start_ms[sel] - boot_ms) % (1 << 32)).astype(">u4")
        elif element == 21:
            v = ((flows.end_ms[sel] - boot_ms) % (1 << 32)).astype(">u4")
        elif element in (10, 14):
            v = (flows.input_if if element == 10 else flows.output_if)[sel].astype(">u4")
        elif element in (7, 11):
            v = np.full(n, 443, ">u2")
        elif element == 4:
            v = np.full(n, 6, "u1")
        elif element == 82:
            v = np.tile(np.frombuffer(b"\x04eth0", np.uint8), (n, 1))
        cols.append(v.view(np.uint8).reshape(n, -1))
    parts = np.concatenate(cols, axis=1)
    return parts


def datagrams(name, flows, boot_ms):
    version, layout = layouts()[name]
    n = len(flows) // PER_DG * PER_DG
    rec = records(layout, flows, np.arange(n), boot_ms).reshape(n // PER_DG, -1)
    out = []
    tfields = b"".join(struct.pack(">HH", e, ln) for e, ln in layout)
    for d in range(n // PER_DG):
        export_ms = int(flows.end_ms[d * PER_DG : (d + 1) * PER_DG].max()) // 1000 * 1000 + 2000
        body = rec[d].tobytes()
        sets = b""
        if d % TEMPLATE_EVERY == 0:
            tpl = struct.pack(">HH", 256, len(layout)) + tfields
            sets += struct.pack(">HH", 0 if version == 9 else 2, 4 + len(tpl)) + tpl
        sets += struct.pack(">HH", 256, 4 + len(body)) + body
        if version == 9:
            head = struct.pack(
                ">HHIIII", 9, PER_DG, (export_ms - boot_ms) % (1 << 32), export_ms // 1000, d, 0
            )
        else:
            head = struct.pack(">HHIII", 10, 16 + len(sets), export_ms // 1000, d * PER_DG, 0)
        out.append(head + sets)
    return out


def to_batches(payloads, size):
    out = []
    for i in range(0, len(payloads), size):
        chunk = payloads[i : i + size]
        b = DatagramBatch.from_payloads(chunk, ["192.0.2.1"] * len(chunk))
        out.append(b)
    return out


def bench(batches, total, attribute_too, table, repeat):
    from accounting.attribution import attribute
    from collector.decode import Decoder

    rates = []
    for _ in range(repeat + 1):  # first run warms the JIT cache
        decoder = Decoder()
        notes: Counter = Counter()
        begin = time.perf_counter()
        n = 0
        for b in batches:
            flows = decoder.decode(b).flows
            n += len(flows)
            if attribute_too:
                attribute(flows, table, bin_ms=300_000, notes=notes)
        rates.append(n / (time.perf_counter() - begin))
        assert n == total, (n, total)
    return rates[1:]


def bench_netflow_package(payloads, limit):
    import netflow

    templates = {"netflow": {}, "ipfix": {}}
    sample = payloads[:limit]
    begin = time.perf_counter()
    n = 0
    for p in sample:
        pkt = netflow.parse_packet(p, templates)
        n += len(pkt.flows)
    return n / (time.perf_counter() - begin)


LAYOUT_LABEL = {
    "ipfix-fixed": "IPFIX, fixed 11-field template (53 B)",
    "v9-fixed": "NetFlow v9, fixed 11 fields (41 B, sysUpTime times)",
    "ipfix-ipv6": "IPFIX, IPv6 addresses (77 B)",
    "ipfix-varlen": "IPFIX, variable-length (11 fields + 1 string)",
}


def write_results(rows, quick: bool, minutes: float, load: str) -> None:
    """Rewrite the decode section of RESULTS.md with this run's figures."""
    from benchmarks.common import Stat, machine, write_section

    lines = [
        f"## NetFlow v9 / IPFIX offline decoding, one core ({'quick' if quick else 'full'} run)",
        "",
        f"Command: `python -m benchmarks decode{' --quick' if quick else ''}` ({minutes:.1f} min). "
        f"Machine: {machine()}; load average at the start: {load}.",
        f"Datagrams built in memory: {PER_DG} records per datagram, the template resent every "
        f"{TEMPLATE_EVERY} datagrams, batches of 10,000 datagrams handed to one long-lived "
        "Decoder, flows in export order (sorted by end time, as routers export), 200 members "
        "with IPv4 prefixes and IPv6 /48s. *decode* = `Decoder.decode` (headers, set walk, "
        "templates, records to a FlowBatch); *+ attribute + bin* adds "
        "`accounting.attribution.attribute` (classify, sampling, bins). The PyPI `netflow` "
        "package parses the first datagrams of the same capture (not timed on the "
        "variable-length layout). Figures: median (min–max, n) of the timed runs after one "
        "warm-up run.",
        "",
        "| layout | flows | decode (M flows/s) | decode + attribute + bin (M flows/s) "
        "| PyPI `netflow` (M flows/s) | egress decode / `netflow` |",
        "|---|---|---|---|---|---|",
    ]
    for name, total, dec, full, pkg in rows:
        d, f = Stat.of(dec), Stat.of(full)
        ratio = f"{d.median / pkg:,.0f}x" if pkg else "n/a"
        lines.append(
            f"| {LAYOUT_LABEL[name]} | {total:,} | {d.fmt(1e-6)} | {f.fmt(1e-6)} "
            f"| {f'{pkg / 1e6:.3f}' if pkg else 'n/a'} | {ratio} |"
        )
    lines += [
        "",
        "Targets (issue 3): fixed-length v9/IPFIX decode + attribute + bin >= 8 M flows/s, with "
        "IPv6 attribution >= 4 M flows/s, variable-length stated.",
    ]
    write_section(f"decode-{'quick' if quick else 'full'}", "\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks decode")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from benchmarks.peers import load_average

    began, load = time.perf_counter(), load_average()
    flows_n = 600_000 if args.quick else 3_000_000
    repeat = 2 if args.quick else 3
    from accounting.members import compile_members
    from accounting.registry import MemberConfig

    members = make_members(200, ipv6=True)
    table = compile_members(
        [
            MemberConfig(m.id, m.name, tuple(ipaddress.ip_network(p) for p in m.prefixes))
            for m in members
        ]
    )
    spec = TrafficSpec(seed=3, flows=flows_n, duration_ms=24 * 3600 * 1000, exporters=1)
    rows = []
    for name in layouts():
        v6 = name == "ipfix-ipv6"
        flows = generate_flows(
            members,
            TrafficSpec(
                **{
                    **spec.__dict__,
                    "ipv6_share": 1.0 if v6 else 0.0,
                    "internal_share": 0.0,
                    "unattributed_share": 0.0,
                }
            ),
        )
        flows = flows.take(np.argsort(flows.end_ms, kind="stable"))  # export order, as routers do
        payloads = datagrams(name, flows, spec.start_ms - 3_600_000)
        total = len(payloads) * PER_DG
        batches = to_batches(payloads, 10_000)
        dec = bench(batches, total, False, table, repeat)
        full = bench(batches, total, True, table, repeat)
        pkg = (
            bench_netflow_package(payloads, 2_000 if args.quick else 10_000)
            if name != "ipfix-varlen"
            else None
        )
        rows.append((name, total, dec, full, pkg))
        print(
            f"{name}: decode {statistics.median(dec) / 1e6:.2f} M flows/s, decode + attribute "
            f"{statistics.median(full) / 1e6:.2f} M flows/s"
            + (f", netflow package {pkg / 1e6:.3f} M flows/s" if pkg else ""),
            flush=True,
        )
    write_results(rows, args.quick, (time.perf_counter() - began) / 60, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
