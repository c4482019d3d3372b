"""`egress members lookup`: which member traffic belongs to, and the rule that decides."""

from __future__ import annotations

import datetime as dt
import ipaddress

from accounting.config import Config

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def explain(
    config: Config,
    address: Address,
    moment: dt.datetime,
    *,
    exporter: str | None = None,
    ifindex: int | None = None,
    vlan: int | None = None,
) -> str:
    """One paragraph: the owner at ``moment`` (local date decides validity) and why."""
    day = moment.date()
    lines = []
    if exporter is not None:
        router = ipaddress.ip_address(exporter)
        for m in config.members:
            for r in m.interface_rules:
                if r.exporter == router and ifindex == r.ifindex and r.validity.covers(day):
                    lines.append(
                        f"{m.id} ({m.name}): interface rule {router} ifIndex {r.ifindex}, valid {r.validity}"
                    )
            for r in m.vlan_rules:
                if r.exporter == router and vlan == r.vlan and r.validity.covers(day):
                    lines.append(
                        f"{m.id} ({m.name}): VLAN rule {router} VLAN {r.vlan}, valid {r.validity}"
                    )
        if lines:
            return lines[0] + " (interface and VLAN rules come before prefixes)\n"
    candidates = []
    for m in config.members:
        for r in m.prefix_rules:
            if address.version == r.network.version and address in r.network:
                candidates.append((r.network.prefixlen, m.id, m.name, r, r.validity.covers(day)))
    for r in config.registry.internal:
        if address.version == r.network.version and address in r.network:
            candidates.append(
                (r.network.prefixlen, "(internal)", "GFU infrastructure", r, r.validity.covers(day))
            )
    valid = sorted((c for c in candidates if c[4]), key=lambda c: -c[0])
    when = moment.isoformat(timespec="minutes")
    if not valid:
        out = f"{address} at {when}: no member (traffic to or from it alone is unattributed)\n"
    else:
        _, mid, name, rule, _ = valid[0]
        out = (
            f"{address} at {when}: {mid} ({name}) by prefix {rule.network} (valid {rule.validity})"
        )
        if mid == "(internal)":
            out += "; traffic touching it is internal, not billed"
        out += "\n"
        for other in valid[1:]:
            out += f"  also inside {other[3].network} of {other[1]} (shorter prefix: not used)\n"
    for c in candidates:
        if not c[4]:
            out += f"  {c[3].network} of {c[1]} is not in force then (valid {c[3].validity})\n"
    return out
