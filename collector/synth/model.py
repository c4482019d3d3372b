"""A deterministic synthetic traffic model: members, internet hosts, and their flows.

Used by the demo, the tests and the benchmarks. Every flow's owner and direction are known
by construction (the generator picks each address from a known block), which is what makes
the ground truth independent of the attribution code under test.

Address plan for member i (i < 16,384):
- a home /22 ``10.a.b.0/22`` (a, b from i) holding its hosts in the first three /24s;
- a carve-out ``/26`` in the last /24 of member (i+1)'s home /22: a more specific prefix
  inside another member's block, so longest-prefix match is exercised on every run;
- optionally extra /26s from ``172.16.0.0/12`` (to reach many prefixes per member; some
  of the member's hosts are drawn from them) and an IPv6 /48 ``2001:db8:<i>::/48``.
Internet hosts are drawn from public ranges outside every member block; "stray" GFU hosts
(in no member prefix, giving unattributed traffic) come from ``192.168.0.0/16``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

OWNER_INTERNAL = -2
OWNER_UNATTRIBUTED = -1
DIR_IN, DIR_OUT, DIR_NONE = 0, 1, 2


@dataclass(frozen=True)
class SynthMember:
    id: str
    name: str
    prefixes: tuple[str, ...]


@dataclass
class SynthFlows:
    """Generated flows with their true owner (member index, -2 internal, -1 unattributed)."""

    ip_version: np.ndarray  # uint8
    src4: np.ndarray  # uint32
    dst4: np.ndarray  # uint32
    src6: np.ndarray  # uint64[n, 2]
    dst6: np.ndarray  # uint64[n, 2]
    octets: np.ndarray  # uint64 (as exported, i.e. sampled)
    packets: np.ndarray  # uint64
    start_ms: np.ndarray  # int64
    end_ms: np.ndarray  # int64
    exporter: np.ndarray  # int32 index into the exporter list
    owner: np.ndarray  # int32
    direction: np.ndarray  # int8
    input_if: np.ndarray  # uint16
    output_if: np.ndarray  # uint16

    def __len__(self) -> int:
        return len(self.octets)

    def take(self, index: np.ndarray) -> SynthFlows:
        return SynthFlows(**{k: v[index] for k, v in self.__dict__.items()})


def _home_block(i: int) -> int:
    """Integer address of member i's home /22 inside 10.0.0.0/8."""
    return (10 << 24) | (i << 10)


def _extra_block(member, k, per_member):
    """Integer address of a member's k-th extra /26 inside 172.16.0.0/12."""
    return (172 << 24) | (16 << 16) | ((member * per_member + k) << 6)


def extra_prefixes_per_member(members: list[SynthMember]) -> int:
    return sum(p.startswith("172.") for p in members[0].prefixes) if members else 0


def make_members(
    count: int, *, extra_v4_per_member: int = 0, ipv6: bool = True
) -> list[SynthMember]:
    """``count`` members with disjoint-by-construction address blocks (see module doc)."""
    if not 1 <= count <= 16_384:
        raise ValueError("1 to 16,384 members")
    members = []
    for i in range(count):
        home = ipaddress.IPv4Network((_home_block(i), 22))
        owner_of_next = (i + 1) % count
        carve = ipaddress.IPv4Network((_home_block(owner_of_next) + 3 * 256 + 64 * (i % 4), 26))
        prefixes = [str(home)]
        if count > 1:
            prefixes.append(str(carve))
        for k in range(extra_v4_per_member):
            block = _extra_block(i, k, extra_v4_per_member)
            if block >= (172 << 24) | (32 << 16):
                raise ValueError("too many extra prefixes for 172.16.0.0/12")
            prefixes.append(str(ipaddress.IPv4Network((block, 26))))
        if ipv6:
            prefixes.append(f"2001:db8:{i:x}::/48")
        members.append(SynthMember(f"m{i:04d}", f"Membre {i}", tuple(prefixes)))
    return members


@dataclass(frozen=True)
class TrafficSpec:
    """Knobs of the generator; every default gives a small but complete mix."""

    seed: int = 1
    flows: int = 20_000
    start_ms: int = 1_793_833_200_000  # 2026-11-05 00:00 Europe/Paris (23:00 UTC)
    duration_ms: int = 6 * 3600 * 1000
    ipv6_share: float = 0.0
    internal_share: float = 0.05
    unattributed_share: float = 0.05
    long_flow_share: float = 0.1  # flows lasting up to 30 minutes (spanning bins)
    exporters: int = 2
    max_octets: int = 2**32 - 1
    max_octets_share: float = 0.001  # flows at the format's byte-count limit (edge cases)
    diurnal: bool = True  # more flows in the (UTC) daytime, so percentiles mean something


def _public_v4(rng: np.random.Generator, n: int) -> np.ndarray:
    """Addresses in 11.0.0.0-126.255.255.255 (outside 10/8, 172.16/12 and 192.168/16)."""
    return rng.integers(11 << 24, 127 << 24, n, dtype=np.uint64).astype(np.uint32)


def _member_host_v4(
    rng: np.random.Generator, members: np.ndarray, n_members: int, extra: int = 0
) -> np.ndarray:
    """A host of each given member: mostly its home /22 (first 3 /24s), sometimes its
    carve-out /26 or one of its extra /26s."""
    home = (np.uint32(10 << 24) | (members.astype(np.uint32) << np.uint32(10))).astype(np.uint32)
    host = home + rng.integers(1, 3 * 256 - 1, len(members)).astype(np.uint32)
    if n_members > 1:
        use_carve = rng.random(len(members)) < 0.2
        # The /26 of member m is inside member (m+1)'s home: base of (m+1) + 768 + 64*(m%4).
        carve_base = (
            (
                np.uint32(10 << 24)
                | ((((members + 1) % n_members).astype(np.uint32)) << np.uint32(10))
            )
            + np.uint32(3 * 256)
            + (64 * (members % 4)).astype(np.uint32)
        )
        carve_host = carve_base + rng.integers(1, 63, len(members)).astype(np.uint32)
        host = np.where(use_carve, carve_host, host).astype(np.uint32)
    if extra:
        use_extra = rng.random(len(members)) < 0.3
        k = rng.integers(0, extra, len(members))
        base = (np.int64(172 << 24) | np.int64(16 << 16)) + ((members * extra + k) << 6)
        extra_host = (base + rng.integers(1, 63, len(members))).astype(np.uint32)
        host = np.where(use_extra, extra_host, host).astype(np.uint32)
    return host


def _member_host_v6(rng: np.random.Generator, members: np.ndarray) -> np.ndarray:
    out = np.zeros((len(members), 2), np.uint64)
    out[:, 0] = (
        (np.uint64(0x2001_0DB8) << np.uint64(32))
        | (members.astype(np.uint64) << np.uint64(16))
        | rng.integers(0, 1 << 16, len(members), dtype=np.uint64)
    )
    out[:, 1] = rng.integers(1, 2**63, len(members), dtype=np.uint64)
    return out


def _public_v6(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros((n, 2), np.uint64)
    out[:, 0] = (np.uint64(0x2A00) << np.uint64(48)) | rng.integers(0, 2**48, n, dtype=np.uint64)
    out[:, 1] = rng.integers(1, 2**63, n, dtype=np.uint64)
    return out


def _start_offsets(rng: np.random.Generator, n: int, duration_ms: int, diurnal: bool) -> np.ndarray:
    """Offsets in [0, duration): uniform, or with a daily cycle peaking mid-afternoon UTC
    (density 1 + 0.8 sin, drawn by rejection)."""
    if not diurnal:
        return rng.integers(0, duration_ms, n)
    out = np.empty(0, np.int64)
    while len(out) < n:
        cand = rng.integers(0, duration_ms, 2 * (n - len(out)) + 16)
        phase = 2 * np.pi * (((cand // 1000) % 86_400) / 86_400.0 - 0.375)
        keep = rng.random(len(cand)) * 1.8 < 1.0 + 0.8 * np.sin(phase)
        out = np.concatenate([out, cand[keep]])
    return out[:n]


def generate_flows(members: list[SynthMember], spec: TrafficSpec) -> SynthFlows:
    """Flows of the traffic model, vectorised (10 M flows take a few seconds)."""
    rng = np.random.default_rng(spec.seed)
    n = spec.flows
    m = len(members)
    has_v6 = any(":" in p for p in members[0].prefixes) if members else False
    kind = rng.random(n)
    internal = kind < spec.internal_share
    unattributed = ~internal & (kind < spec.internal_share + spec.unattributed_share)
    member_flow = ~internal & ~unattributed
    is_v6 = (rng.random(n) < spec.ipv6_share) & member_flow & has_v6
    # Member popularity is skewed (a few big members), as in a real syndicate.
    weights = 1.0 / (np.arange(m) + 1.0) ** 0.8
    member = rng.choice(m, size=n, p=weights / weights.sum()).astype(np.int64)
    peer = rng.choice(m, size=n, p=weights / weights.sum()).astype(np.int64)
    upload = rng.random(n) < 0.3

    extra = extra_prefixes_per_member(members)
    local4 = _member_host_v4(rng, member, m, extra)
    peer4 = _member_host_v4(rng, peer, m, extra)
    remote4 = _public_v4(rng, n)
    stray4 = (
        np.uint32(192 << 24 | 168 << 16) + rng.integers(1, 65535, n).astype(np.uint32)
    ).astype(np.uint32)

    src4 = np.where(upload, local4, remote4)
    dst4 = np.where(upload, remote4, local4)
    src4 = np.where(internal, local4, src4)
    dst4 = np.where(internal, peer4, dst4)
    src4 = np.where(unattributed & upload, stray4, src4)
    dst4 = np.where(unattributed & upload, remote4, dst4)
    src4 = np.where(unattributed & ~upload, remote4, src4)
    dst4 = np.where(unattributed & ~upload, stray4, dst4)

    src6 = np.zeros((n, 2), np.uint64)
    dst6 = np.zeros((n, 2), np.uint64)
    if is_v6.any():
        k = np.flatnonzero(is_v6)
        local6 = _member_host_v6(rng, member[k])
        remote6 = _public_v6(rng, len(k))
        up = upload[k][:, None]
        src6[k] = np.where(up, local6, remote6)
        dst6[k] = np.where(up, remote6, local6)
        src4[k] = 0
        dst4[k] = 0

    owner = np.where(member_flow, member, OWNER_UNATTRIBUTED).astype(np.int32)
    owner[internal] = OWNER_INTERNAL
    direction = np.where(upload, DIR_OUT, DIR_IN).astype(np.int8)
    direction[~member_flow] = DIR_NONE

    start = spec.start_ms + _start_offsets(rng, n, spec.duration_ms, spec.diurnal)
    long_flow = rng.random(n) < spec.long_flow_share
    dur = np.where(
        long_flow,
        rng.integers(0, 30 * 60 * 1000, n),
        rng.integers(0, 60 * 1000, n),
    )
    dur[rng.random(n) < 0.05] = 0
    end = start + dur
    # Heavy-tailed sizes, capped to what the export format carries.
    octets = np.minimum(
        (rng.pareto(1.2, n) * 2000 + 40).astype(np.uint64), np.uint64(spec.max_octets)
    )
    octets[rng.random(n) < spec.max_octets_share] = np.uint64(spec.max_octets)
    packets = np.maximum(octets // np.uint64(900), np.uint64(1))
    exporter = rng.integers(0, spec.exporters, n).astype(np.int32)
    uplink = np.uint16(1)
    lan = rng.integers(2, 64, n).astype(np.uint16)
    input_if = np.where(upload, lan, uplink).astype(np.uint16)
    output_if = np.where(upload, uplink, lan).astype(np.uint16)
    return SynthFlows(
        ip_version=np.where(is_v6, 6, 4).astype(np.uint8),
        src4=src4.astype(np.uint32),
        dst4=dst4.astype(np.uint32),
        src6=src6,
        dst6=dst6,
        octets=octets,
        packets=packets,
        start_ms=start.astype(np.int64),
        end_ms=end.astype(np.int64),
        exporter=exporter,
        owner=owner,
        direction=direction,
        input_if=input_if,
        output_if=output_if,
    )
