"""Every NetFlow v9 / IPFIX capture of ../shared agrees with tshark, record by record.

tshark 4.0 (Wireshark's ``cflow`` dissector, driven through pyshark's JSON mode) is the
oracle. Per capture, datagrams are matched in file order (capture time, exporter, payload
length) and, per datagram, egress's flow records are compared with tshark's as multisets
(egress groups the records of a message by template; the order inside a message is not
part of what is compared) on: IPv4/IPv6 source and destination, octets and packets (delta
counts, else post-*, else total counts: the FlowBatch rules), ingress/egress interface,
VLAN, flow direction, and start/end times wherever tshark shows them (absolute times;
v9 and IPFIX sysUpTime times converted with the header's uptime / tshark's own
systemInitTime). Options data records are not flows and are left out on both sides.

tshark decodes a file in one pass and never goes back: data sets that precede their
template are not decoded by it. egress buffers them and decodes them when the template
arrives: those extra records are checked separately (every one is counted in
``*_records_decoded_after_template``). Where tshark reports malformed data or decodes
nothing, egress must not crash, and what it drops is counted.

Copyleft captures (akvorado AGPL, pmacct GPL, nDPI LGPL) are read from ../shared only;
the test skips when ../shared is absent. Records compared per capture are capped at
MAX_RECORDS (pyshark is slow); the biggest captures here stay below it.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from collector.decode import Decoder
from collector.ipfixfile import read_ipfix_file
from collector.pcap import read_datagrams

pytestmark = pytest.mark.oracle

DECODE_AS = (9991, 9992, 2100, 8096, 9990, 2057)
MAX_RECORDS = 5000
MANIFEST_ROW = re.compile(r"^\| ([^|]+\.(?:pcap|ipfix)) \| [^|]+ \| ([^|]+) \| ([^|]+) \|")


def corpus(captures: Path) -> list[tuple[str, str]]:
    """(relative path, license) of every v9/IPFIX capture listed in MANIFEST.md."""
    out = []
    for line in (captures / "MANIFEST.md").read_text().splitlines():
        m = MANIFEST_ROW.match(line)
        if m and (m.group(3).startswith("NetFlow v9") or m.group(3).startswith("IPFIX")):
            out.append((m.group(1).strip(), m.group(2).strip()))
    return out


def _corpus_ids():
    from conftest import CAPTURES

    if not CAPTURES.is_dir():
        return ["absent"]
    return [p for p, _ in corpus(CAPTURES)]


# --- tshark side -------------------------------------------------------------------------


def _first(v):
    return v[0] if isinstance(v, list) else v


def _abstime_ms(show: str) -> int:
    """'Jun  4, 2023 08:39:53.216000000 UTC' -> unix ms (floor)."""
    text = " ".join(show.split())
    head, frac = text.rsplit(".", 1)
    frac = frac.split()[0]
    moment = datetime.strptime(head, "%b %d, %Y %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000 + int(frac[:3].ljust(3, "0"))


def _rel_ms(show: str) -> int:
    return int(Decimal(show) * 1000)


def _signed32(x: int) -> int:
    x &= 0xFFFF_FFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def _walk(d: dict, prefix: str):
    """Sub-dicts whose key starts with ``prefix``, in order."""
    for k, v in d.items():
        if k.startswith(prefix):
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, dict):
                    yield k, item


def _all_values(d, key: str) -> list:
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            if k == key:
                out += v if isinstance(v, list) else [v]
            elif isinstance(v, (dict, list)):
                out += _all_values(v, key)
    elif isinstance(d, list):
        for v in d:
            out += _all_values(v, key)
    return out


class TsharkState:
    """What tshark itself learnt: options template ids and systemInitTime per exporter."""

    def __init__(self) -> None:
        self.options: set[tuple] = set()
        self.init_ms: dict[tuple, int] = {}


def _direction(show) -> int:
    """flowDirection as egress stores it: IANA value + 1 for 0/1, else 0 (unknown)."""
    if show is None:
        return 0
    value = int(show, 16) if str(show).startswith("0x") else int(show)
    return value + 1 if value in (0, 1) else 0


def _record(flow: dict, ctx: dict, state: TsharkState, key) -> dict:
    def get(name):
        v = flow.get(name)
        return None if v is None else _first(v)

    def addr(name, family):
        v = get(name)
        return int(ipaddress.ip_address(v)) if v is not None else 0

    def count(*names):
        for n in names:
            v = get(n)
            if v is not None:
                return int(v)
        return 0

    rec = {
        "src4": addr("cflow.srcaddr", 4),
        "dst4": addr("cflow.dstaddr", 4),
        "src6": addr("cflow.srcaddrv6", 6),
        "dst6": addr("cflow.dstaddrv6", 6),
        "octets": count("cflow.octets", "cflow.post_octets", "cflow.permanent_octets"),
        "packets": count("cflow.packets", "cflow.post_packets", "cflow.permanent_packets"),
        "in_if": count("cflow.inputint"),
        "out_if": count("cflow.outputint"),
        "vlan": count("cflow.vlanid", "cflow.dot1q_vlan_id"),
        "direction": _direction(get("cflow.direction")),
    }
    for end, absname, relname in (
        ("start", "cflow.abstimestart", "cflow.timestart"),
        ("end", "cflow.abstimeend", "cflow.timeend"),
    ):
        value = None
        tree = flow.get("cflow.timedelta_tree") or {}
        source = {**flow, **tree} if isinstance(tree, dict) else flow
        if source.get(absname) is not None:
            value = _abstime_ms(_first(source[absname]))
            if value == 0 and (ctx["version"] == 9 or key in state.init_ms):
                # tshark 4.0 shows a sysUpTime stamp of 0 as the epoch: it is uptime 0.
                if ctx["version"] == 9:
                    value = ctx["unix_secs"] * 1000 - _signed32(ctx["uptime_ms"])
                else:
                    value = state.init_ms[key]
                    rec["uptime_based"] = True
        elif source.get(relname) is not None:
            rel = _rel_ms(_first(source[relname]))
            if ctx["version"] == 9:
                value = ctx["unix_secs"] * 1000 - _signed32(ctx["uptime_ms"] - rel)
            elif key in state.init_ms:
                value = state.init_ms[key] + rel
                rec["uptime_based"] = True
        rec[end] = value
    return rec


def tshark_records(path: Path, is_ipfix_file: bool) -> list[dict]:
    """Per cflow datagram: {'time_ns', 'source', 'length', 'records', 'malformed'}."""
    import pyshark

    decode_as = {f"udp.port=={p}": "cflow" for p in DECODE_AS}
    cap = pyshark.FileCapture(
        str(path),
        use_json=True,
        keep_packets=False,
        decode_as=None if is_ipfix_file else decode_as,
    )
    state = TsharkState()
    out = []
    try:
        for pkt in cap:
            layers = [layer for layer in pkt.layers if layer.layer_name == "cflow"]
            if not layers:
                continue
            malformed = any(layer.layer_name == "_ws.malformed" for layer in pkt.layers)
            if is_ipfix_file:
                source = "0.0.0.0"
            elif hasattr(pkt, "ip"):
                source = str(ipaddress.ip_address(pkt.ip.src))
            else:
                source = str(ipaddress.ip_address(pkt.ipv6.src))
            records = []
            reasons = set()
            for layer in layers:
                d = layer._all_fields
                version = int(_first(d["cflow.version"]))
                if version not in (9, 10):
                    continue
                if version == 9:
                    domain = int(_first(d["cflow.source_id"]))
                    ctx = {
                        "version": 9,
                        "unix_secs": int(_first(d["cflow.timestamp_tree"]["cflow.unix_secs"])),
                        "uptime_ms": _rel_ms(_first(d["cflow.sysuptime"])),
                    }
                else:
                    domain = int(_first(d["cflow.od_id"]))
                    ctx = {"version": 10}
                key = (source, version, domain)
                if version == 9:
                    shown = len(_all_values(d, "cflow.template_id")) + sum(
                        1 for _n, st in _walk(d, "FlowSet ") for _f in _walk(st, "Flow ")
                    )
                    if shown >= int(_first(d["cflow.count"])):
                        reasons.add("tshark stops at the v9 header count")
                for _name, s in list(_walk(d, "FlowSet ")) + list(_walk(d, "Set ")):
                    set_id = int(_first(s.get("cflow.flowset_id", -1)))
                    if any("no template found" in k for k in s):
                        reasons.add("tshark found no template (it keys templates by UDP port)")
                    if set_id in (1, 3):
                        for tid in _all_values(s, "cflow.template_id"):
                            state.options.add((*key, int(tid)))
                        continue
                    if set_id in (0, 2):
                        for tid in _all_values(s, "cflow.template_id"):
                            state.options.discard((*key, int(tid)))
                    if set_id < 256:
                        continue
                    flows = [f for _k, f in _walk(s, "Flow ")]
                    if (*key, set_id) in state.options:
                        for f in flows:
                            init = f.get("cflow.sys_init_time")
                            if init is not None:
                                state.init_ms[key] = _abstime_ms(_first(init))
                        continue
                    records += [_record(f, ctx, state, key) for f in flows]
            out.append(
                {
                    "time_ns": int(Decimal(pkt.sniff_timestamp) * 1_000_000_000),
                    "source": source,
                    "records": records,
                    "malformed": malformed,
                    "frame": int(pkt.number),
                    "reasons": reasons | ({"tshark: malformed"} if malformed else set()),
                }
            )
    finally:
        cap.close()
    return out


# --- egress side -------------------------------------------------------------------------


def _pair_int(pair) -> int:
    return (int(pair[0]) << 64) | int(pair[1])


def egress_records(path: Path, is_ipfix_file: bool):
    """Per datagram in file order: (time_ns, source, own records, late records, result)."""
    decoder = Decoder()
    reader = read_ipfix_file(path) if is_ipfix_file else read_datagrams(path)
    out = []
    for batch in reader:
        for i in range(len(batch)):
            one = batch.select(np.array([i]))
            r = decoder.decode(one)
            f = r.flows
            late = r.notes.get("v9_records_decoded_after_template", 0) + r.notes.get(
                "ipfix_records_decoded_after_template", 0
            )
            own = len(f) - late
            v6 = f.has_ipv6
            recs = []
            for j in range(len(f)):
                recs.append(
                    {
                        "src4": int(f.source_ipv4_address[j]),
                        "dst4": int(f.destination_ipv4_address[j]),
                        "src6": _pair_int(f.source_ipv6_address[j]) if v6 else 0,
                        "dst6": _pair_int(f.destination_ipv6_address[j]) if v6 else 0,
                        "octets": int(f.octet_delta_count[j]),
                        "packets": int(f.packet_delta_count[j]),
                        "in_if": int(f.ingress_interface[j]),
                        "out_if": int(f.egress_interface[j]),
                        "vlan": int(f.vlan_id[j]),
                        "direction": int(f.flow_direction[j]),
                        "start": int(f.flow_start_milliseconds[j]),
                        "end": int(f.flow_end_milliseconds[j]),
                        "time_source": int(f.time_source[j]),
                    }
                )
            src = ipaddress.IPv6Address(_pair_int(one.source_address[0]))
            out.append(
                {
                    "time_ns": int(one.arrival_ns[0]),
                    "source": str(src.ipv4_mapped or src),
                    "own": recs[:own],
                    "late": recs[own:],
                    "result": r,
                }
            )
    return out, decoder


FIELDS = (
    "src4",
    "dst4",
    "src6",
    "dst6",
    "octets",
    "packets",
    "in_if",
    "out_if",
    "vlan",
    "direction",
)


def _times_agree(t: dict, e: dict) -> bool:
    """tshark's times (where shown) equal egress's; sysUpTime-based IPFIX times modulo 2**32
    ms (tshark adds systemInitTime + uptime; egress anchors the 32-bit uptime at the export
    time, which stays right across the uptime wrap)."""
    for end in ("start", "end"):
        if t[end] is None:
            continue
        if t.get("uptime_based"):
            if (t[end] - e[end]) % (1 << 32):
                return False
        elif t[end] != e[end]:
            return False
    return True


def _key(rec: dict) -> tuple:
    return tuple(rec[k] for k in FIELDS)


def compare(tshark: list[dict], egress: list[dict]) -> tuple[list[str], int, int]:
    """(problems, records compared, unexplained egress-only records, all egress-only records
    as (frame, count, tshark's reasons for not decoding them))."""
    problems: list[str] = []
    compared = extra = 0
    extras = []
    j = 0
    for t in tshark:
        while j < len(egress) and not (
            egress[j]["time_ns"] == t["time_ns"] and egress[j]["source"] == t["source"]
        ):
            j += 1
        if j >= len(egress):
            problems.append(f"frame {t['frame']}: no egress datagram at {t['time_ns']}")
            break
        e = egress[j]
        j += 1
        if compared >= MAX_RECORDS:
            break
        pool = list(e["own"])
        for r in t["records"]:
            same = [i for i, er in enumerate(pool) if _key(er) == _key(r)]
            if not same:
                problems.append(f"frame {t['frame']}: tshark record {r} not decoded by egress")
                continue
            timed = [i for i in same if _times_agree(r, pool[i])]
            if not timed:
                er = pool[same[0]]
                problems.append(
                    f"frame {t['frame']}: times tshark {r['start']}..{r['end']} "
                    f"egress {er['start']}..{er['end']} ({r})"
                )
            pool.pop((timed or same)[0])
            compared += 1
        if pool:
            extras.append((t["frame"], len(pool), sorted(t["reasons"])))
            if not t["reasons"]:
                extra += len(pool)
        if len(problems) > 20:
            break
    return problems, compared, extra, extras


@pytest.mark.parametrize("relpath", _corpus_ids())
def test_capture_agrees_with_tshark(captures_dir, relpath):
    path = captures_dir / relpath
    is_file = relpath.endswith(".ipfix")
    tshark = tshark_records(path, is_file)
    egress, _decoder = egress_records(path, is_file)
    problems, compared, extra, extras = compare(tshark, egress)
    assert not problems, "\n".join(problems)
    assert (
        compared == min(sum(len(t["records"]) for t in tshark), MAX_RECORDS)
        or compared >= MAX_RECORDS
    )
    # Records egress decoded in a datagram beyond tshark's are records tshark could not
    # decode: templates it never saw there (decoded late by egress, or from another port).
    late = sum(len(e["late"]) for e in egress)
    notes = Counter()
    for e in egress:
        notes.update(e["result"].notes)
    assert (
        late
        == notes["v9_records_decoded_after_template"]
        + notes["ipfix_records_decoded_after_template"]
    )
    # Records egress decoded where tshark did not must be explained by tshark itself:
    # a malformed frame, the v9 header count it stops at, or no template under its key
    # (tshark keys templates by UDP port too; egress never does).
    assert extra == 0, f"egress decoded records tshark did not, unexplained: {extras}"


def test_template_from_another_port_is_used(captures_dir):
    """pmacct 112: the exporter changes UDP source port after sending template 347; tshark
    loses the template, egress (keyed by address, domain, id) decodes the data."""
    path = captures_dir / "pmacct/112-IPFIXv10-CISCO-options-map-reassignment_traffic-00.pcap"
    tshark = tshark_records(path, False)
    egress, _ = egress_records(path, False)
    _problems, _n, _extra, extras = compare(tshark, egress)
    assert any(frame == 11 and n > 0 for frame, n, _r in extras)


def test_late_records_are_the_buffered_ones(captures_dir):
    """Data before its template (same packet, then across packets): egress decodes it late."""
    path = captures_dir / "python-netflow-v9-softflowd/softflowd_v9_data_before_template.pcap"
    egress, _ = egress_records(path, False)
    late = sum(len(e["late"]) for e in egress)
    tshark = tshark_records(path, False)
    assert late == 12  # the first packet's 12 records, decoded when the template came
    assert sum(len(e["own"]) for e in egress) == sum(len(t["records"]) for t in tshark) == 32
    one_packet = captures_dir / "python-netflow-v9-softflowd/softflowd_v9_template_mixed_order.pcap"
    egress, _ = egress_records(one_packet, False)
    assert [len(e["late"]) for e in egress] == [8] and tshark_records(one_packet, False)[0][
        "records"
    ] == []


def test_corpus_is_listed(captures_dir):
    listed = corpus(captures_dir)
    assert len(listed) > 60
    assert any(lic.startswith("AGPL") for _p, lic in listed)
