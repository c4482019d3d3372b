"""Corpora of the side-by-side benchmarks (live, accuracy, scaling), with ground truth.

(benchmarks/corpus.py keeps the foundation's v5 corpus; these are the others.)

- ``live_stream``: the looping stream of the live throughput method: one router,
  30 records per datagram, NetFlow v5 (1,464 B datagrams) or IPFIX with one 11-field
  template (53 B records, template resent every 100 messages), 1,000 members holding
  10,000 prefixes, flows over 10 minutes (so a peer's 5-minute cache stays small).
  The flows of every datagram are known, so the totals a receiver must report after any
  number of datagrams (loops over the file included) are exact.
- ``accuracy_replay``: v5 (two routers, one sampling 1:4, one whose uptime wraps), v9
  and IPFIX (three routers: uptime wrap, two samplers 1:10 and 1:100 in options data,
  data before its template, an IPv6-transport router redefining a template; 30 % IPv6
  flows), flows spanning bins; truth per (member, direction).

Everything is generated once into benchmarks/work/ and reused while its parameters
(``params.json``) match.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import WORK_DIR
from benchmarks.stream import StreamFile, load_stream, write_stream
from collector.synth.model import (
    DIR_NONE,
    OWNER_INTERNAL,
    OWNER_UNATTRIBUTED,
    SynthMember,
    TrafficSpec,
    generate_flows,
    make_members,
)
from collector.synth.netflow5 import V5Exporter, encode_v5
from collector.synth.pcapwriter import write_capture
from collector.synth.scenario import config_text

MONTH = "2026-11"  # every corpus lies in this (Europe/Paris) month
START_MS = TrafficSpec().start_ms  # 2026-11-05 00:00 Europe/Paris

Totals = dict[tuple[int, int], int]  # (owner, direction) -> bytes; owner -2 internal, -1 unatt.


# -- members and configuration ------------------------------------------------------------


def save_members(path: Path, members: list[SynthMember]) -> None:
    path.write_text(json.dumps([[m.id, m.name, list(m.prefixes)] for m in members]))


def load_members(path: Path) -> list[SynthMember]:
    return [SynthMember(i, n, tuple(p)) for i, n, p in json.loads(path.read_text())]


def sharing_block(compare: tuple[str, ...]) -> str:
    """The [sharing] table that limits the rules a report computes side by side."""
    return "\n[sharing]\ncompare = [" + ", ".join(f'"{r}"' for r in compare) + "]\n"


TOTALS_ONLY = ("volume",)


def set_report_rules(config: Path, compare: tuple[str, ...] | None) -> None:
    """Make a cached case's egress.toml compute ``compare`` side by side (None: egress's
    default, every rule); see egress_config."""
    text = config.read_text()
    head, sep, _old = text.partition("\n[sharing]\ncompare = ")
    if sep:
        text = head.rstrip() + "\n"
    if compare is not None:
        text = text.rstrip() + "\n" + sharing_block(compare)
    config.write_text(text)


def egress_config(
    members: list[SynthMember],
    database: Path | str,
    exporters: list[str] | tuple[str, ...],
    *,
    listen: list[str] | None = None,
    state_dir: Path | str | None = None,
    flush_seconds: float | None = None,
    workers: int | None = None,
    journal_dir: Path | str | None = None,
    compare: tuple[str, ...] | None = TOTALS_ONLY,
) -> str:
    """egress.toml: the synthetic members, the routers allowed, and (for ``egress
    collect``) where to listen. Keys of [collector] and [[exporters]] as in
    accounting/collector_config.py. ``compare``: the rules a report computes side by side;
    by default the volume rule only (the benchmarks read its totals; the other rules,
    Shapley above all, would only add time); None keeps egress's default, every rule."""
    text = config_text(members, str(database))
    head, sep, rest = text.partition("\n[[members]]")
    extra = sharing_block(compare).rstrip().split("\n") if compare is not None else []
    if listen is not None:
        extra += ["", "[collector]", "listen = [" + ", ".join(f'"{a}"' for a in listen) + "]"]
        extra.append("receive_buffer_bytes = 67108864")
        if flush_seconds is not None:
            extra.append(f"flush_seconds = {flush_seconds}")
        if state_dir is not None:
            extra.append(f'state_dir = "{state_dir}"')
        if workers is not None:
            extra.append(f"workers = {workers}")
        if journal_dir is not None:
            extra.append(f'journal_dir = "{journal_dir}"')
    for a in exporters:
        extra += ["", "[[exporters]]", f'address = "{a}"']
    return head.rstrip() + "\n" + "\n".join(extra) + "\n" + sep + rest


def totals_from_arrays(owner, direction, nbytes) -> Totals:
    keys = (np.asarray(owner, np.int64) + 2) * 3 + np.asarray(direction, np.int64)
    sums = np.zeros(int(keys.max()) + 1 if len(keys) else 1, np.int64)
    np.add.at(sums, keys, np.asarray(nbytes, np.int64))
    out = {}
    for k in np.flatnonzero(sums).tolist():
        out[(k // 3 - 2, k % 3)] = int(sums[k])
    return out


def normalise(totals: Totals) -> Totals:
    """Internal and unattributed as one row each (direction 2), zero rows dropped."""
    out: Totals = {}
    for (owner, direction), b in totals.items():
        key = (
            (owner, DIR_NONE)
            if owner in (OWNER_INTERNAL, OWNER_UNATTRIBUTED)
            else (owner, direction)
        )
        out[key] = out.get(key, 0) + int(b)
    return {k: v for k, v in out.items() if v}


class MemberIndex:
    """Longest-prefix match of addresses to member indexes, in plain Python (for the
    peers' aggregated outputs; a reference independent of egress's kernels)."""

    def __init__(self, members: list[SynthMember]) -> None:
        self.by_len: dict[tuple[int, int], dict[int, int]] = {}
        self.by_network: dict[str, int] = {}
        for i, m in enumerate(members):
            for p in m.prefixes:
                net = ipaddress.ip_network(p)
                self.by_len.setdefault((net.version, net.prefixlen), {})[
                    int(net.network_address)
                ] = i
                self.by_network[f"{net.network_address}/{net.prefixlen}"] = i
        self.lengths = {
            v: sorted((n for ver, n in self.by_len if ver == v), reverse=True) for v in (4, 6)
        }
        self.max_len = {v: (self.lengths[v][0] if self.lengths[v] else 0) for v in (4, 6)}

    def lookup(self, address: str) -> int:
        """Member index, or -1."""
        a = ipaddress.ip_address(address)
        value, bits = int(a), (32 if a.version == 4 else 128)
        for n in self.lengths[a.version]:
            masked = value >> (bits - n) << (bits - n)
            hit = self.by_len[(a.version, n)].get(masked)
            if hit is not None:
                return hit
        return -1

    def classify(self, src: str, dst: str) -> tuple[int, int]:
        """(owner, direction) of a flow: in = towards a member, out = from a member."""
        s, d = self.lookup(src), self.lookup(dst)
        if s >= 0 and d >= 0:
            return OWNER_INTERNAL, DIR_NONE
        if d >= 0:
            return d, 0
        if s >= 0:
            return s, 1
        return OWNER_UNATTRIBUTED, DIR_NONE


def networks_file(path: Path, members: list[SynthMember], *, ipv6: bool = True) -> None:
    """pmacct networks_file: one prefix per line, ``ASN,prefix`` with ASN = index + 1."""
    lines = []
    for i, m in enumerate(members):
        for p in m.prefixes:
            if ipv6 or ":" not in p:
                lines.append(f"{i + 1},{p}")
    path.write_text("\n".join(lines) + "\n")


def _fresh(directory: Path, params: dict) -> bool:
    marker = directory / "params.json"
    return marker.exists() and json.loads(marker.read_text()) == params


def _done(directory: Path, params: dict) -> None:
    (directory / "params.json").write_text(json.dumps(params))


# -- the live stream -------------------------------------------------------------------


@dataclass(frozen=True)
class LiveStream:
    protocol: str  # "v5" | "ipfix"
    directory: Path
    stream: StreamFile
    members: list[SynthMember]
    owner: np.ndarray  # per flow, in sending order
    direction: np.ndarray
    nbytes: np.ndarray
    first_flow: np.ndarray  # int64[datagrams + 1]: index of each datagram's first flow

    def totals_of_prefix(self, k: int) -> Totals:
        return totals_from_arrays(self.owner[:k], self.direction[:k], self.nbytes[:k])

    def expected(self, sent: dict) -> tuple[Totals, int, int]:
        """(per (owner, direction) bytes, flows, bytes) a receiver must report after the
        sender's report ``sent``."""
        loops, position = int(sent["loops"]), int(sent["position"])
        k = int(self.first_flow[position])
        whole, part = self.totals_of_prefix(len(self.owner)), self.totals_of_prefix(k)
        totals = {
            key: loops * whole.get(key, 0) + part.get(key, 0) for key in set(whole) | set(part)
        }
        flows = loops * len(self.owner) + k
        total_bytes = loops * int(self.nbytes.sum()) + int(self.nbytes[:k].sum())
        return normalise(totals), flows, total_bytes


def live_stream(
    protocol: str, datagrams: int = 20_000, members: int = 1000, extra: int = 8, seed: int = 21
) -> LiveStream:
    if protocol not in ("v5", "ipfix"):
        raise ValueError("live streams are v5 or ipfix")
    directory = WORK_DIR / f"live-{protocol}-{datagrams}-{members}-{extra}-{seed}"
    params = {"datagrams": datagrams, "members": members, "extra": extra, "seed": seed, "v": 3}
    member_list = make_members(members, extra_v4_per_member=extra, ipv6=False)
    npz = directory / "flows.npz"
    if not _fresh(directory, params):
        directory.mkdir(parents=True, exist_ok=True)
        n = datagrams * 30
        spec = TrafficSpec(
            seed=seed, flows=n, duration_ms=10 * 60 * 1000, exporters=1, diurnal=False
        )
        flows = generate_flows(member_list, spec)
        order = np.argsort(flows.end_ms, kind="stable")  # both encoders export in end order
        if protocol == "v5":
            out = encode_v5(flows, [V5Exporter("192.0.2.10", 1, spec.start_ms - 3_600_000)])
            got = np.concatenate(
                [
                    np.frombuffer(d.payload, ">u4", offset=24)
                    .reshape(-1, 12)[:, 5]
                    .astype(np.uint64)
                    for d in out
                ]
            )
        else:
            from collector.synth.ipfix import encode_ipfix
            from collector.synth.netflow9 import TemplatedExporter

            ex = TemplatedExporter(
                "192.0.2.10",
                domain=1,
                layout="a",
                time_mode="ms",
                template_every=100,
                records_per_datagram=30,
                destination_port=4739,
            )
            out = encode_ipfix(flows, [ex])
            got = None
        if got is not None and not np.array_equal(got, flows.octets[order]):
            raise AssertionError("stream order differs from the encoder's")
        if len(out) != datagrams:
            raise AssertionError(f"{len(out)} datagrams, expected {datagrams}")
        write_stream(directory / "stream.bin", [d.source for d in out], [d.payload for d in out])
        first = np.arange(0, n + 1, 30, dtype=np.int64)
        np.savez(
            npz,
            owner=flows.owner[order],
            direction=flows.direction[order],
            nbytes=flows.octets[order].astype(np.int64),
            first_flow=first,
        )
        save_members(directory / "members.json", member_list)
        networks_file(directory / "networks.lst", member_list)
        _done(directory, params)
    data = np.load(npz)
    stream = load_stream(directory / "stream.bin")
    return LiveStream(
        protocol,
        directory,
        stream,
        member_list,
        data["owner"],
        data["direction"],
        data["nbytes"],
        data["first_flow"],
    )


# -- accuracy replays ------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    name: str
    directory: Path
    capture: Path
    config: Path  # egress.toml for offline ingest (the capture's exporter addresses)
    members: list[SynthMember]
    truth: Totals  # normalised
    description: str
    ipv6: bool
    flows: int

    @property
    def stream(self) -> StreamFile:
        from benchmarks.stream import load_stream, stream_from_pcap

        path = self.directory / "stream.bin"
        if not path.exists() or path.stat().st_mtime < self.capture.stat().st_mtime:
            return stream_from_pcap(self.capture, path)
        return load_stream(path)


def _save_replay(directory: Path, replay: Replay) -> None:
    (directory / "truth.json").write_text(
        json.dumps([[o, d, b] for (o, d), b in sorted(replay.truth.items())])
    )
    (directory / "replay.json").write_text(
        json.dumps(
            {
                "name": replay.name,
                "capture": replay.capture.name,
                "description": replay.description,
                "ipv6": replay.ipv6,
                "flows": replay.flows,
            }
        )
    )
    save_members(directory / "members.json", replay.members)


def load_replay(directory: Path) -> Replay:
    meta = json.loads((directory / "replay.json").read_text())
    set_report_rules(directory / "egress.toml", TOTALS_ONLY)
    truth = {(o, d): b for o, d, b in json.loads((directory / "truth.json").read_text())}
    return Replay(
        meta["name"],
        directory,
        directory / meta["capture"],
        directory / "egress.toml",
        load_members(directory / "members.json"),
        truth,
        meta["description"],
        meta["ipv6"],
        meta["flows"],
    )


def accuracy_replay(protocol: str, flows: int, members: int = 200, seed: int = 5) -> Replay:
    """A synthetic capture of ``protocol`` (v5, v9, ipfix) and its ground truth."""
    directory = WORK_DIR / f"accuracy-{protocol}-{flows}-{members}-{seed}"
    params = {"protocol": protocol, "flows": flows, "members": members, "seed": seed, "v": 2}
    if _fresh(directory, params):
        return load_replay(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = TrafficSpec(seed=seed, flows=flows, duration_ms=6 * 3600 * 1000)
    if protocol == "v5":
        member_list = make_members(members, extra_v4_per_member=2, ipv6=False)
        spec = TrafficSpec(**{**spec.__dict__, "exporters": 2})
        generated = generate_flows(member_list, spec)
        exporters = [
            V5Exporter("192.0.2.10", 1, spec.start_ms - 3_600_000),
            V5Exporter("192.0.2.11", 4, spec.start_ms + 7_200_000 - (1 << 32)),
        ]
        capture = directory / "exports.pcap"
        write_capture(capture, encode_v5(generated, exporters))
        rate = np.array([e.sampling_interval for e in exporters], np.int64)[generated.exporter]
        truth = totals_from_arrays(
            generated.owner, generated.direction, generated.octets.astype(np.int64) * rate
        )
        addresses = [e.address for e in exporters]
        description = (
            "NetFlow v5, two routers (192.0.2.10 unsampled; 192.0.2.11 sampling 1:4 in the "
            "header, its sysUpTime wraps past 2^32 ms), 6 hours, 10 % of flows up to 30 min "
            "long (spanning bins), IPv4 only"
        )
        ipv6 = False
    elif protocol in ("v9", "ipfix"):
        from collector.synth.scenario_v9 import templated_scenario

        scenario = templated_scenario(
            directory, protocol=protocol, members=members, spec=spec, name="exports"
        )
        member_list = scenario.members
        capture = scenario.capture
        truth = scenario.truth.totals_by_owner()
        addresses = [e.address for e in scenario.exporters]
        description = (
            f"{'NetFlow v9' if protocol == 'v9' else 'IPFIX'}, three routers (uptime wrap; "
            "two samplers 1:10 and 1:100 announced in options data, data before its "
            "template; an IPv6-transport router"
            + (" withdrawing and redefining a template" if protocol == "ipfix" else "")
            + "), 30 % IPv6 flows, 6 hours, flows spanning bins"
        )
        ipv6 = True
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    config = directory / "egress.toml"
    config.write_text(egress_config(member_list, directory / "egress.duckdb", addresses))
    replay = Replay(
        protocol,
        directory,
        capture,
        config,
        member_list,
        normalise(truth),
        description,
        ipv6,
        flows,
    )
    _save_replay(directory, replay)
    (directory / "stream.bin").unlink(missing_ok=True)
    _done(directory, params)
    return replay
