"""Wireshark's NetFlow dissector (tshark, driven through pyshark) as a decoding oracle.

Why tshark: the ``cflow`` dissector is an independent, widely used implementation of the
NetFlow v5 layout, written and maintained by other people over two decades. Where egress and
tshark read the same bytes the same way, a shared misreading of the format is unlikely;
where they differ, one of them has a bug and the test shows the field, record and frame.

What is compared, per capture, datagram by datagram and record by record:

- the frame around each datagram (this checks egress's pcap/pcapng and link-layer parsing):
  exporter address (``ip.src``/``ipv6.src``), UDP source port, UDP payload length and
  capture time in nanoseconds;
- every NetFlow v5 header field egress decodes (version, count, sys_uptime, unix_secs,
  unix_nsecs, flow_sequence, engine_type, engine_id, sampling_interval);
- every field of every v5 record egress decodes (all 20 of the 48-byte layout, the two
  padding fields included);
- optionally the mapped :class:`~collector.batch.FlowBatch` columns, against a naive
  per-record recomputation from tshark's values (:func:`flow_columns_from_oracle`).

Units: tshark shows ``cflow.sysuptime``, ``cflow.timestart`` and ``cflow.timeend`` as
relative times in seconds with nine decimals ("190649.064000000"); they are converted back
to integer milliseconds, and a non-integral value is an error, not a rounding. The header's
16-bit sampling field is split by tshark into ``cflow.samplingmode`` (top 2 bits) and
``cflow.samplerate`` (low 14 bits); they are joined again as ``mode << 14 | rate``.
``cflow.tcpflags`` and ``cflow.tos`` show in hex ("0x10"); ``cflow.padding`` appears twice
per record (1 byte, then 2 bytes shown "00:00"); addresses are dotted quads.

Only datagrams tshark decodes as NetFlow **v5** are collected. Datagrams on ports other
than 2055 need decode-as (``decode_as_ports``); frames on such a port that are not NetFlow
(sFlow, say) stay plain UDP in tshark and are ignored here.

pyshark is slow (a few thousand records per second): keep generated captures small.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import numpy as np

from collector.batch import FlowBatch
from collector.decode import Decoder
from collector.decode.netflow5 import decode_v5
from collector.pcap import CaptureStats, read_datagrams

HEADER_FIELDS = (
    "version",
    "count",
    "sys_uptime",
    "unix_secs",
    "unix_nsecs",
    "flow_sequence",
    "engine_type",
    "engine_id",
    "sampling_interval",
)
RECORD_FIELDS = (
    "srcaddr",
    "dstaddr",
    "nexthop",
    "input",
    "output",
    "dPkts",
    "dOctets",
    "first",
    "last",
    "srcport",
    "dstport",
    "pad1",
    "tcp_flags",
    "prot",
    "tos",
    "src_as",
    "dst_as",
    "src_mask",
    "dst_mask",
    "pad2",
)


class OracleError(AssertionError):
    """tshark's output could not be turned into v5 datagrams unambiguously."""


@dataclass(frozen=True)
class V5Datagram:
    """One NetFlow v5 datagram as a decoder saw it, in egress's field names and units."""

    time_ns: int  # capture time of the frame, unix nanoseconds
    source: str  # exporter address, as ipaddress formats it (IPv4 dotted for IPv4)
    source_port: int
    payload_length: int  # UDP payload bytes
    header: dict[str, int]
    records: tuple[dict[str, int], ...]
    frame: int | None = None  # tshark frame number (1-based), when known
    malformed: bool = False  # tshark flagged the frame as malformed (_ws.malformed)
    expert: tuple[str, ...] = ()  # tshark's expert infos on the cflow layer, e.g.
    # "Expert Info (Warning/Malformed): FlowSets impossible - PDU Count is 0"


@dataclass
class OracleCapture:
    """What tshark decoded in one capture file."""

    path: Path
    frames: int = 0
    datagrams: list[V5Datagram] = field(default_factory=list)
    cflow_versions: Counter = field(default_factory=Counter)  # cflow.version -> frames

    @property
    def records(self) -> int:
        return sum(len(d.records) for d in self.datagrams)


@dataclass
class EgressCapture:
    """What egress decoded in one capture file (decode_v5 view and Decoder view)."""

    path: Path
    stats: CaptureStats
    datagrams: list[V5Datagram] = field(default_factory=list)
    v5_errors: Counter = field(default_factory=Counter)  # decode_v5's counter
    dropped: Counter = field(default_factory=Counter)  # Decoder's DecodeResult.dropped, summed
    flows: FlowBatch = field(default_factory=FlowBatch.empty)
    exporters: list[np.ndarray] = field(default_factory=list)  # per batch, DecodeResult.exporters
    exporter_addresses: list[str] = field(default_factory=list)  # per flow row

    @property
    def records(self) -> int:
        return sum(len(d.records) for d in self.datagrams)


# --- tshark side ---------------------------------------------------------------------------


def _int(show: str) -> int:
    """An integer as tshark shows it: decimal, or hex with 0x (BASE_HEX fields)."""
    return int(show, 16) if show.lower().startswith("0x") else int(show)


def _milliseconds(show: str) -> int:
    """A relative time shown in seconds ("190649.064000000") as integer milliseconds."""
    value = Decimal(show) * 1000
    if value != value.to_integral_value():
        raise OracleError(f"time {show!r} s is not a whole number of milliseconds")
    return int(value)


def _ipv4(show: str) -> int:
    return int(ipaddress.IPv4Address(show))


def _hex_bytes(show: str) -> int:
    """Padding shown as bytes ("00", "00:7d") -> the big-endian integer."""
    return int(show.replace(":", ""), 16) if show else 0


# (egress name, cflow field, converter), in on-the-wire order
_HEADER_MAP: tuple[tuple[str, str, Callable[[str], int]], ...] = (
    ("version", "version", _int),
    ("count", "count", _int),
    ("sys_uptime", "sysuptime", _milliseconds),
    ("unix_secs", "unix_secs", _int),
    ("unix_nsecs", "unix_nsecs", _int),
    ("flow_sequence", "sequence", _int),
    ("engine_type", "engine_type", _int),
    ("engine_id", "engine_id", _int),
)
_RECORD_MAP: tuple[tuple[str, str, Callable[[str], int]], ...] = (
    ("srcaddr", "srcaddr", _ipv4),
    ("dstaddr", "dstaddr", _ipv4),
    ("nexthop", "nexthop", _ipv4),
    ("input", "inputint", _int),
    ("output", "outputint", _int),
    ("dPkts", "packets", _int),
    ("dOctets", "octets", _int),
    ("first", "timestart", _milliseconds),
    ("last", "timeend", _milliseconds),
    ("srcport", "srcport", _int),
    ("dstport", "dstport", _int),
    ("tcp_flags", "tcpflags", _int),
    ("prot", "protocol", _int),
    ("tos", "tos", _int),
    ("src_as", "srcas", _int),
    ("dst_as", "dstas", _int),
    ("src_mask", "srcmask", _int),
    ("dst_mask", "dstmask", _int),
)


def _shows(layer, name: str) -> list[str]:
    container = layer.get_field(name)
    if container is None:
        return []
    return [f.show for f in container.all_fields]


def _shownames(layer, name: str) -> list[str]:
    container = layer.get_field(name)
    if container is None:
        return []
    return [f.showname for f in container.all_fields]


def _one(layer, name: str, frame: int) -> str:
    shows = _shows(layer, name)
    if len(shows) != 1:
        raise OracleError(f"frame {frame}: expected one cflow.{name}, tshark gave {shows!r}")
    return shows[0]


def _v5_from_layer(pkt, layer, frame: int) -> V5Datagram:
    header = {name: conv(_one(layer, tshark, frame)) for name, tshark, conv in _HEADER_MAP}
    mode = _int(_one(layer, "samplingmode", frame))
    rate = _int(_one(layer, "samplerate", frame))
    header["sampling_interval"] = (mode << 14) | rate

    columns = {name: _shows(layer, tshark) for name, tshark, _ in _RECORD_MAP}
    n = len(columns["srcaddr"])
    bad = {name: len(values) for name, values in columns.items() if len(values) != n}
    padding = _shows(layer, "padding")
    if bad or len(padding) != 2 * n:
        raise OracleError(
            f"frame {frame}: tshark decoded {n} v5 records but some fields are missing "
            f"or repeated ({bad}, {len(padding)} padding fields): a partial record?"
        )
    convs = {name: conv for name, _, conv in _RECORD_MAP}
    records = []
    for i in range(n):
        rec = {name: convs[name](columns[name][i]) for name in columns}
        rec["pad1"] = _hex_bytes(padding[2 * i])
        rec["pad2"] = _hex_bytes(padding[2 * i + 1])
        records.append({name: rec[name] for name in RECORD_FIELDS})

    if hasattr(pkt, "ip"):
        source = str(ipaddress.ip_address(pkt.ip.src))
    else:
        source = str(ipaddress.ip_address(pkt.ipv6.src))
    return V5Datagram(
        time_ns=int(Decimal(pkt.sniff_timestamp) * 1_000_000_000),
        source=source,
        source_port=int(pkt.udp.srcport),
        payload_length=int(pkt.udp.length) - 8,
        header={name: header[name] for name in HEADER_FIELDS},
        records=tuple(records),
        frame=frame,
        malformed=any(layer.layer_name == "_ws.malformed" for layer in pkt.layers),
        expert=tuple(_shownames(layer, "_ws.expert")),
    )


def tshark_v5(path: Path | str, *, decode_as_ports: Iterable[int] = ()) -> OracleCapture:
    """Run tshark (through pyshark) over a capture; collect every NetFlow v5 datagram.

    ``decode_as_ports``: UDP ports to decode as cflow besides the default 2055 (and the
    other ports Wireshark registers for NetFlow).
    """
    import pyshark  # only the oracle tests need it

    path = Path(path)
    decode_as = {f"udp.port=={int(p)}": "cflow" for p in decode_as_ports}
    out = OracleCapture(path)
    capture = pyshark.FileCapture(str(path), keep_packets=False, decode_as=decode_as or None)
    try:
        for pkt in capture:
            out.frames += 1
            frame = int(pkt.number)
            layers = [layer for layer in pkt.layers if layer.layer_name == "cflow"]
            if not layers:
                continue
            if len(layers) > 1:
                raise OracleError(f"{path} frame {frame}: {len(layers)} cflow layers")
            version = _int(_one(layers[0], "version", frame))
            out.cflow_versions[version] += 1
            if version == 5:
                out.datagrams.append(_v5_from_layer(pkt, layers[0], frame))
    finally:
        capture.close()
    return out


# --- egress side ---------------------------------------------------------------------------


def _address(pair: np.ndarray) -> str:
    """egress's (hi, lo) uint64 address, IPv4-mapped for IPv4, as a string."""
    value = (int(pair[0]) << 64) | int(pair[1])
    v6 = ipaddress.IPv6Address(value)
    return str(v6.ipv4_mapped or v6)


def egress_v5(path: Path | str) -> EgressCapture:
    """Read a capture with egress: the raw decode_v5 view, and the Decoder's FlowBatch."""
    path = Path(path)
    stats = CaptureStats()
    out = EgressCapture(path, stats)
    decoder = Decoder()
    flows = []
    for batch in read_datagrams(path, stats=stats):
        first = np.where(batch.lengths >= 2, batch.offsets, 0)
        version = (batch.buffer[first].astype(np.int64) << 8) | batch.buffer[first + 1]
        rows = np.flatnonzero((batch.lengths >= 2) & (version == 5))
        v5 = decode_v5(batch, rows, out.v5_errors)
        records = v5.records.tolist()
        names = v5.records.dtype.names
        for d, row in enumerate(v5.rows.tolist()):
            header = dict(zip(v5.headers.dtype.names, v5.headers[d].tolist(), strict=True))
            mine = np.flatnonzero(v5.datagram_of_record == d).tolist()
            out.datagrams.append(
                V5Datagram(
                    time_ns=int(batch.arrival_ns[row]),
                    source=_address(batch.source_address[row]),
                    source_port=int(batch.source_port[row]),
                    payload_length=int(batch.lengths[row]),
                    header={k: int(v) for k, v in header.items()},
                    records=tuple(
                        {k: int(v) for k, v in zip(names, records[i], strict=True)} for i in mine
                    ),
                )
            )
        result = decoder.decode(batch)
        out.dropped.update(result.dropped)
        out.exporters.append(result.exporters)
        flows.append(result.flows)
        out.exporter_addresses += [
            _address(result.exporters[i]) for i in result.flows.exporter_index.tolist()
        ]
    out.flows = FlowBatch.concat(flows) if flows else FlowBatch.empty()
    return out


# --- comparison ----------------------------------------------------------------------------


def compare_v5(
    oracle: Sequence[V5Datagram], egress: Sequence[V5Datagram], *, limit: int = 25
) -> list[str]:
    """Differences between tshark's and egress's datagrams, in file order ([] = agree).

    Each line names the tshark frame, the record (when it is a record field), the field,
    and both values.
    """
    problems: list[str] = []
    if len(oracle) != len(egress):
        problems.append(f"datagram count: tshark {len(oracle)}, egress {len(egress)}")
    for o, e in zip(oracle, egress, strict=False):
        where = f"frame {o.frame}" if o.frame is not None else "datagram"
        for attr in ("time_ns", "source", "source_port", "payload_length"):
            if getattr(o, attr) != getattr(e, attr):
                problems.append(
                    f"{where}: {attr}: tshark {getattr(o, attr)!r}, egress {getattr(e, attr)!r}"
                )
        if set(o.header) != set(e.header):
            problems.append(
                f"{where}: header fields differ: tshark {sorted(o.header)}, egress {sorted(e.header)}"
            )
        for name in HEADER_FIELDS:
            if o.header.get(name) != e.header.get(name):
                problems.append(
                    f"{where}: header {name}: tshark {o.header.get(name)}, egress {e.header.get(name)}"
                )
        if len(o.records) != len(e.records):
            problems.append(
                f"{where}: record count: tshark {len(o.records)}, egress {len(e.records)}"
            )
        for i, (ro, re) in enumerate(zip(o.records, e.records, strict=False)):
            if set(ro) != set(re):
                problems.append(
                    f"{where} record {i}: fields differ: tshark {sorted(ro)}, egress {sorted(re)}"
                )
            for name in RECORD_FIELDS:
                if ro.get(name) != re.get(name):
                    problems.append(
                        f"{where} record {i}: {name}: tshark {ro.get(name)}, egress {re.get(name)}"
                    )
        if len(problems) >= limit:
            problems.append("... (stopped)")
            break
    return problems


def _signed32(x: int) -> int:
    x &= 0xFFFF_FFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def flow_columns_from_oracle(datagrams: Sequence[V5Datagram]) -> dict[str, list[int]]:
    """FlowBatch columns recomputed naively, one record at a time, from tshark's values.

    Times: export time = unix_secs s + unix_nsecs ns (whole ms); a record's start/end =
    export time - (sys_uptime - first/last) taken as a signed 32-bit difference (uptime
    wrap). An end before its start is kept with start := end. Sampling: the header's low
    14 bits, 0 meaning unsampled (1).
    """
    cols: dict[str, list[int]] = {
        "source_ipv4_address": [],
        "destination_ipv4_address": [],
        "octet_delta_count": [],
        "packet_delta_count": [],
        "sampling_interval": [],
        "flow_start_milliseconds": [],
        "flow_end_milliseconds": [],
        "ingress_interface": [],
        "egress_interface": [],
        "ip_version": [],
    }
    for d in datagrams:
        h = d.header
        export_ms = h["unix_secs"] * 1000 + h["unix_nsecs"] // 1_000_000
        rate = h["sampling_interval"] & 0x3FFF
        for r in d.records:
            start = export_ms - _signed32(h["sys_uptime"] - r["first"])
            end = export_ms - _signed32(h["sys_uptime"] - r["last"])
            cols["source_ipv4_address"].append(r["srcaddr"])
            cols["destination_ipv4_address"].append(r["dstaddr"])
            cols["octet_delta_count"].append(r["dOctets"])
            cols["packet_delta_count"].append(r["dPkts"])
            cols["sampling_interval"].append(rate or 1)
            cols["flow_start_milliseconds"].append(min(start, end))
            cols["flow_end_milliseconds"].append(end)
            cols["ingress_interface"].append(r["input"])
            cols["egress_interface"].append(r["output"])
            cols["ip_version"].append(4)
    return cols


def compare_flows(
    oracle: Sequence[V5Datagram], egress: EgressCapture, *, limit: int = 25
) -> list[str]:
    """Differences between egress's FlowBatch and the naive recomputation from tshark."""
    expected = flow_columns_from_oracle(oracle)
    expected_exporters = [d.source for d in oracle for _ in d.records]
    flows = egress.flows
    problems: list[str] = []
    n = len(expected_exporters)
    if len(flows) != n:
        return [f"flow rows: tshark {n}, egress {len(flows)}"]
    for name, values in expected.items():
        got = getattr(flows, name).tolist()
        for i in np.flatnonzero(np.asarray(got, dtype=object) != np.asarray(values, dtype=object)):
            problems.append(f"flow {i}: {name}: expected {values[i]}, egress {got[i]}")
            if len(problems) >= limit:
                return [*problems, "... (stopped)"]
    for i, (want, got) in enumerate(
        zip(expected_exporters, egress.exporter_addresses, strict=True)
    ):
        if want != got:
            problems.append(f"flow {i}: exporter: tshark {want}, egress {got}")
            if len(problems) >= limit:
                return [*problems, "... (stopped)"]
    return problems


def mutated(datagrams: Sequence[V5Datagram], index: int, part: str, name: str, record: int = 0):
    """A copy of ``datagrams`` with one value changed (for testing that the comparer bites).

    ``part`` is "header", "record" or "frame" (a V5Datagram attribute such as time_ns).
    """
    out = list(datagrams)
    d = out[index]
    if part == "header":
        out[index] = replace(d, header={**d.header, name: d.header[name] ^ 1})
    elif part == "record":
        recs = list(d.records)
        recs[record] = {**recs[record], name: recs[record][name] ^ 1}
        out[index] = replace(d, records=tuple(recs))
    else:
        value = getattr(d, name)
        if isinstance(value, str):
            value = str(ipaddress.ip_address(value) + 1)
        else:
            value ^= 1
        out[index] = replace(d, **{name: value})
    return out
