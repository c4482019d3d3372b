"""Ready-made NetFlow v9 / IPFIX scenarios: capture, egress.toml and ground truth.

The default routers exercise what real exports do to a collector:

- ``192.0.2.20``: unsampled, its sysUpTime wraps past 2**32 ms during the capture;
- ``192.0.2.21``: two samplers at 1:10 and 1:100 (rates in options data), template id
  256 with a *different* layout from the other routers', and its first three packets
  carry data before any template (about 100 s
  before it: within the decoder's default 300 s age limit);
- ``2001:db8:ffff::30`` (IPv6 transport): IPFIX withdraws template 256 and redefines
  it with another layout mid-capture.

IPv6 flows (a share of member traffic) use template 257. Totals are exact: the ground
truth multiplies each flow by the rate of the sampler that exported it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from collector.synth.ipfix import encode_ipfix
from collector.synth.model import TrafficSpec, generate_flows, make_members
from collector.synth.netflow9 import TemplatedExporter, encode_v9, flow_rates
from collector.synth.pcapwriter import LINK_ETHERNET, write_capture
from collector.synth.scenario import Scenario, config_text
from collector.synth.truth import ground_truth


def default_templated_exporters(start_ms: int, protocol: str) -> list[TemplatedExporter]:
    ipfix = protocol == "ipfix"
    port = 4739 if ipfix else 2055
    return [
        TemplatedExporter(
            "192.0.2.20",
            domain=1,
            boot_ms=start_ms + 3_600_000 - (1 << 32),
            template_every=10,
            time_mode="uptime",
            destination_port=port,
        ),
        TemplatedExporter(
            "192.0.2.21",
            domain=7,
            samplers=((1, 10), (2, 100)),
            boot_ms=start_ms - 86_400_000,
            layout="b",
            records_per_datagram=10,
            template_after=3,
            time_mode="delta",
            destination_port=port,
        ),
        TemplatedExporter(
            "2001:db8:ffff::30",
            domain=0,
            boot_ms=start_ms - 1_000,
            time_mode="ms",
            redefine_after=5 if ipfix else None,
            destination_port=port,
        ),
    ]


def templated_scenario(
    directory: Path | str,
    *,
    protocol: str = "v9",
    members: int = 20,
    spec: TrafficSpec | None = None,
    exporters: list[TemplatedExporter] | None = None,
    ipv6_share: float = 0.3,
    bin_seconds: int = 300,
    linktype: int = LINK_ETHERNET,
    name: str | None = None,
) -> Scenario:
    """Generate a v9 or IPFIX capture, its egress.toml and its ground truth."""
    if protocol not in ("v9", "ipfix"):
        raise ValueError("protocol must be 'v9' or 'ipfix'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = spec or TrafficSpec()
    member_list = make_members(members, ipv6=True)
    exporters = exporters or default_templated_exporters(spec.start_ms, protocol)
    spec = TrafficSpec(**{**spec.__dict__, "exporters": len(exporters), "ipv6_share": ipv6_share})
    flows = generate_flows(member_list, spec)
    if protocol == "v9":
        flows.octets = np.minimum(flows.octets, np.uint64(2**32 - 1))  # layout "a": 4 bytes
        datagrams = encode_v9(flows, exporters)
    else:
        flows.octets = np.minimum(flows.octets, np.uint64(2**32 - 1))  # layout "b": 4 bytes
        datagrams = encode_ipfix(flows, exporters)
    capture = directory / f"{name or 'demo-' + protocol}.pcap"
    write_capture(capture, datagrams, linktype=linktype)
    config = directory / "egress.toml"
    config.write_text(
        config_text(member_list, bin_seconds=bin_seconds, exporters=[e.address for e in exporters]),
        encoding="utf-8",
    )
    truth = ground_truth(per_flow_exporter(flows), flow_rates(flows, exporters), bin_seconds * 1000)
    return Scenario(capture, config, member_list, flows, truth, list(exporters), len(datagrams))


def per_flow_exporter(flows):
    """The flows with one pseudo-exporter per flow, so ground_truth takes per-flow rates."""
    out = flows.take(np.arange(len(flows)))
    out.exporter = np.arange(len(flows), dtype=np.int32)
    return out
