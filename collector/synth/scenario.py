"""Ready-made scenarios: a capture file, the configuration that goes with it, its truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collector.synth.model import SynthFlows, SynthMember, TrafficSpec, generate_flows, make_members
from collector.synth.netflow5 import V5Exporter, encode_v5
from collector.synth.pcapwriter import LINK_ETHERNET, write_capture
from collector.synth.truth import Truth, ground_truth


@dataclass
class Scenario:
    capture: Path
    config: Path
    members: list[SynthMember]
    flows: SynthFlows
    truth: Truth
    exporters: list[V5Exporter] = field(default_factory=list)
    datagrams: int = 0


def config_text(
    members: list[SynthMember],
    database: str = "egress.duckdb",
    *,
    monthly_eur: str = "4000.00",
    timezone: str = "Europe/Paris",
    bin_seconds: int = 300,
    exporters: list[str] | None = None,
    allow_unknown_exporters: bool = False,
) -> str:
    """An egress.toml for synthetic members and the routers (addresses) that export."""
    lines = [
        "[storage]",
        f'database = "{database}"',
        "",
        "[billing]",
        f'timezone = "{timezone}"',
        f"bin_seconds = {bin_seconds}",
        "percentile = 95",
        'direction = "max"',
        "",
        "[contract]",
        f"monthly_eur = {monthly_eur}",
    ]
    if allow_unknown_exporters:
        lines += ["", "[collector]", "allow_unknown_exporters = true"]
    for address in exporters or []:
        lines += ["", "[[exporters]]", f'address = "{address}"']
    for m in members:
        prefixes = ", ".join(f'"{p}"' for p in m.prefixes)
        lines += [
            "",
            "[[members]]",
            f'id = "{m.id}"',
            f'name = "{m.name}"',
            f"prefixes = [{prefixes}]",
        ]
    return "\n".join(lines) + "\n"


def default_v5_exporters(start_ms: int) -> list[V5Exporter]:
    """Two routers: one unsampled, one sampling 1:10 whose uptime wraps an hour in."""
    return [
        V5Exporter("192.0.2.10", sampling_interval=1, boot_ms=start_ms - 3_600_000),
        V5Exporter("192.0.2.11", sampling_interval=10, boot_ms=start_ms + 3_600_000 - (1 << 32)),
    ]


def v5_scenario(
    directory: Path | str,
    *,
    members: int = 20,
    spec: TrafficSpec | None = None,
    exporters: list[V5Exporter] | None = None,
    bin_seconds: int = 300,
    linktype: int = LINK_ETHERNET,
    pcapng: bool = False,
    name: str = "demo-v5",
) -> Scenario:
    """Generate a NetFlow v5 capture, its egress.toml and its ground truth in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = spec or TrafficSpec()
    member_list = make_members(members, ipv6=False)
    exporters = exporters or default_v5_exporters(spec.start_ms)
    spec = TrafficSpec(**{**spec.__dict__, "exporters": len(exporters), "ipv6_share": 0.0})
    flows = generate_flows(member_list, spec)
    datagrams = encode_v5(flows, exporters)
    capture = directory / f"{name}{'.pcapng' if pcapng else '.pcap'}"
    write_capture(capture, datagrams, linktype=linktype, pcapng=pcapng)
    config = directory / "egress.toml"
    config.write_text(
        config_text(member_list, bin_seconds=bin_seconds, exporters=[e.address for e in exporters]),
        encoding="utf-8",
    )
    rates = np.array([e.sampling_interval for e in exporters], dtype=np.int64)
    truth = ground_truth(flows, rates, bin_seconds * 1000)
    return Scenario(capture, config, member_list, flows, truth, exporters, len(datagrams))
