"""The member registry: rules by prefix, interface and VLAN with their precedence,
validity periods (a prefix moving between members mid-month), internal prefixes, the CSV
form, and every validation message."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from flow_builders import ipfix_message, ipfix_set, ipfix_template

from accounting.config import ConfigError, parse_config
from collector.synth.pcapwriter import Datagram, write_capture
from reports.cli import main

BASE = '[contract]\nmonthly_eur = 1000\n[[exporters]]\naddress = "192.0.2.1"\n'
MONTH_START_MS = 1_793_487_600_000  # 2026-11-01 00:00 Europe/Paris


def problems(text: str, path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + text, path or Path("/etc/egress/egress.toml"))
    return info.value.problems


# -- precedence: interface > VLAN > longest prefix > internal ------------------------------

REGISTRY = """
[registry]
internal_prefixes = ["10.255.0.0/16"]

[[members]]
id = "epci"
name = "EPCI"
type = "epci"
prefixes = ["10.0.0.0/8"]

[[members]]
id = "town"
name = "Town"
type = "commune"
prefixes = ["10.1.0.0/16"]

[[members]]
id = "natted"
name = "Town behind NAT"
interfaces = [{ exporter = "192.0.2.1", ifindex = 42 }]

[[members]]
id = "on-vlan"
name = "Town on a VLAN"
vlans = [{ exporter = "192.0.2.1", vlan = 300 }]
"""

FIELDS = [(8, 4), (12, 4), (1, 8), (2, 8), (152, 8), (153, 8), (10, 4), (14, 4), (58, 2)]
RECORD = struct.Struct(">IIQQQQIIH")


def _flows(rng: np.random.Generator, n: int):
    """Flows of every kind with their expected (owner, direction) under REGISTRY."""
    internet = lambda: int(rng.integers(0x0B000000, 0x7E000000))  # noqa: E731
    cases = []
    for _ in range(n):
        kind = int(rng.integers(0, 8))
        up = bool(rng.integers(0, 2))
        octets = int(rng.integers(40, 10**9))
        start = MONTH_START_MS + int(rng.integers(0, 20 * 86_400_000))
        end = start + int(rng.integers(0, 900_000))
        inif, outif, vlan = 1, 2, 0
        if kind == 0:  # EPCI's own address (in 10/8 but not 10.1/16 nor 10.255/16)
            local, who = 0x0A020000 + int(rng.integers(1, 65535)), "epci"
        elif kind == 1:  # the town's /16 inside the EPCI's /8: the longer prefix wins
            local, who = 0x0A010000 + int(rng.integers(1, 65535)), "town"
        elif kind == 2:  # NAT'd town on ifIndex 42, with an address nobody declares
            local, who = 0x64400000 + int(rng.integers(1, 65535)), "natted"
            inif, outif = (42, 1) if up else (1, 42)
        elif kind == 3:  # interface beats prefix: a town address arriving on ifIndex 42
            local, who = 0x0A010000 + int(rng.integers(1, 65535)), "natted"
            inif, outif = (42, 1) if up else (1, 42)
        elif kind == 4:  # uploads on VLAN 300 from an undeclared address
            local, who, up, vlan = 0x64500000 + int(rng.integers(1, 65535)), "on-vlan", True, 300
        elif kind == 5:  # VLAN beats prefix too
            local, who, up, vlan = 0x0A010000 + int(rng.integers(1, 65535)), "on-vlan", True, 300
        elif kind == 6:  # infrastructure: internal even towards the internet
            local, who = 0x0AFF0000 + int(rng.integers(1, 65535)), "internal"
        else:  # nobody's
            local, who = 0xC0A80000 + int(rng.integers(1, 65535)), "unattributed"
        remote = internet()
        src, dst = (local, remote) if up else (remote, local)
        direction = "none" if who in ("internal", "unattributed") else ("out" if up else "in")
        cases.append(
            (
                RECORD.pack(src, dst, octets, 1, start, end, inif, outif, vlan),
                who,
                direction,
                octets,
            )
        )
    return cases


def test_rules_by_prefix_interface_and_vlan_with_precedence(tmp_path):
    rng = np.random.default_rng(2)
    cases = _flows(rng, 3000)
    template = ipfix_set(2, ipfix_template(300, FIELDS))
    datagrams = [
        Datagram(0, "192.0.2.1", ipfix_message([template], seq=0, export_s=MONTH_START_MS // 1000))
    ]
    seq = 0
    for k in range(0, len(cases), 20):
        chunk = cases[k : k + 20]
        body = b"".join(c[0] for c in chunk)
        message = ipfix_message(
            [ipfix_set(300, body)], seq=seq, export_s=MONTH_START_MS // 1000 + 21 * 86_400
        )
        datagrams.append(Datagram(0, "192.0.2.1", message))
        seq += len(chunk)
    capture = tmp_path / "rules.pcap"
    write_capture(capture, datagrams)
    config = tmp_path / "egress.toml"
    config.write_text(BASE + REGISTRY)
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", "-c", str(config), str(capture)])
    assert result.exit_code == 0, result.output
    report = json.loads(
        runner.invoke(main, ["report", "-c", str(config), "-m", "2026-11", "-f", "json"]).output
    )
    want: dict[tuple[str, str], int] = {}
    for _, who, direction, octets in cases:
        want[(who, direction)] = want.get((who, direction), 0) + octets
    got = {}
    for m in report["members"]:
        got[(m["id"], "in")] = m["bytes_in"]
        got[(m["id"], "out")] = m["bytes_out"]
    got[("internal", "none")] = report["internal"]["bytes"]
    got[("unattributed", "none")] = report["unattributed"]["bytes_unknown_direction"]
    assert {k: v for k, v in got.items() if v} == want


# -- validity periods --------------------------------------------------------------------


def test_prefix_moved_mid_month_splits_the_month_exactly(tmp_path):
    """10.9.0.0/24 belongs to A until the 14th and to B from the 15th (local days). A flow
    running across midnight is split at that instant; totals per member are exact."""
    text = (
        BASE
        + """
[[members]]
id = "a"
name = "A"
prefixes = ["10.1.0.0/16", { prefix = "10.9.0.0/24", valid_to = 2026-11-14 }]

[[members]]
id = "b"
name = "B"
prefixes = ["10.2.0.0/16", { prefix = "10.9.0.0/24", valid_from = 2026-11-15 }]
"""
    )
    config = tmp_path / "egress.toml"
    config.write_text(text)
    midnight = MONTH_START_MS + 14 * 86_400_000  # 2026-11-15 00:00 Paris
    records = [
        # 600 s before to 1,200 s after the change: 1/3 to A, 2/3 to B (6,000 bytes)
        RECORD.pack(
            0x0A090005, 0x5DB8D822, 6000, 3, midnight - 600_000, midnight + 1_200_000, 1, 2, 0
        ),
        RECORD.pack(
            0x0A090006, 0x5DB8D822, 1000, 1, midnight - 5_000_000, midnight - 4_000_000, 1, 2, 0
        ),
        RECORD.pack(
            0x5DB8D822, 0x0A090007, 7000, 1, midnight + 86_400_000, midnight + 86_400_000, 1, 2, 0
        ),
    ]
    template = ipfix_set(2, ipfix_template(300, FIELDS))
    message = ipfix_message(
        [template, ipfix_set(300, b"".join(records))], export_s=midnight // 1000 + 90_000
    )
    capture = tmp_path / "move.pcap"
    write_capture(capture, [Datagram(0, "192.0.2.1", message)])
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", "-c", str(config), str(capture)]).exit_code == 0
    report = json.loads(
        runner.invoke(main, ["report", "-c", str(config), "-m", "2026-11", "-f", "json"]).output
    )
    by = {m["id"]: (m["bytes_in"], m["bytes_out"]) for m in report["members"]}
    assert by == {"a": (0, 2000 + 1000), "b": (7000, 4000)}
    # Re-running the month's report later gives the same numbers (nothing re-attributed).
    again = json.loads(
        runner.invoke(main, ["report", "-c", str(config), "-m", "2026-11", "-f", "json"]).output
    )
    assert again["members"] == report["members"]


# -- CSV ---------------------------------------------------------------------------------


def test_members_from_a_csv_file(tmp_path):
    (tmp_path / "members.csv").write_text(
        "id;name;type;population;subscribed_mbps;flat_monthly_eur;contact;valid_from;valid_to;prefixes\n"
        "mairie-a;Mairie de A;commune;12 000;100;80,00;dsi@a.fr;2026-01-01;;10.1.0.0/16 2001:db8:1::/48\n"
        "cc-b;Communauté B;epci;45000;1000;;;;;10.2.0.0/16;10.3.0.0/24\n",
        encoding="utf-8",
    )
    config = parse_config(BASE + '[registry]\ncsv = "members.csv"\n', tmp_path / "egress.toml")
    a, b = config.members
    assert (a.id, a.type, a.population, a.subscribed_mbps, a.contact) == (
        "mairie-a",
        "commune",
        12000,
        100.0,
        "dsi@a.fr",
    )
    assert a.flat_monthly_cents == 8000 and b.flat_monthly_cents is None
    assert [str(p) for p in b.prefixes] == ["10.2.0.0/16", "10.3.0.0/24"]
    assert str(a.validity.valid_from) == "2026-01-01"


def test_csv_errors_name_file_and_line(tmp_path):
    (tmp_path / "members.csv").write_text(
        "id,name,prefixes\nok,OK,10.1.0.0/16\nBad Id,X,10.2.0.0/16\nz,Z,10.3.0.0/33\nw,W,10.1.0.0/16\n"
    )
    found = problems('[registry]\ncsv = "members.csv"\n', tmp_path / "egress.toml")
    assert any(
        p.startswith("members.csv:3 (id 'Bad Id').id: must be 1-64 characters") for p in found
    ), found
    assert any(
        p.startswith("members.csv:4 (id 'z').prefixes[0]: '10.3.0.0/33' is not a valid")
        for p in found
    ), found
    assert any(
        p.startswith(
            "members.csv:5 (id 'w').prefixes[0]: 10.1.0.0/16 is already claimed by member 'ok'"
        )
        for p in found
    ), found
    (tmp_path / "bad.csv").write_text("id,name,colour\na,A,red\n")
    found = problems('[registry]\ncsv = "bad.csv"\n', tmp_path / "egress.toml")
    assert any(p.startswith("bad.csv:1: unknown column(s) colour") for p in found), found
    found = problems('[registry]\ncsv = "missing.csv"\n', tmp_path / "egress.toml")
    assert any(p.startswith("registry.csv:") and "cannot be read" in p for p in found), found


# -- validation messages -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[members]]\nid = "a"\nname = "A"\ntype = "city"',
            "members[0] (id 'a').type: must be one of commune, epci, department, other",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\npopulation = -3',
            "members[0] (id 'a').population: must be a whole number >= 0",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nsubscribed_mbps = "fast"',
            "members[0] (id 'a').subscribed_mbps: must be a number of Mb/s",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nflat_monthly_eur = 1.234',
            "members[0] (id 'a').flat_monthly_eur: has more than two decimals",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nvalid_from = "soon"',
            "members[0] (id 'a').valid_from: must be a date such as 2026-11-15",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nvalid_from = 2026-11-15T10:00:00',
            "members[0] (id 'a').valid_from: must be a date (2026-11-15), not a date-time",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nvalid_from = 2026-11-15\nvalid_to = 2026-11-01',
            "members[0] (id 'a').valid_to: 2026-11-01 is before valid_from 2026-11-15",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nvalid_from = 2026-11-15\nprefixes = [{ prefix = "10.1.0.0/16", valid_from = 2026-11-01 }]',
            "members[0] (id 'a').prefixes[0]: valid 2026-11-01 to …, outside the member's own validity (2026-11-15 to …)",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nprefixes = [{ network = "10.1.0.0/16" }]',
            "members[0] (id 'a').prefixes[0].network: unknown key",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\ninterfaces = [{ exporter = "192.0.2.9", ifindex = 3 }]',
            "members[0] (id 'a').interfaces[0].exporter: 192.0.2.9 is not declared under [[exporters]]",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\ninterfaces = [{ exporter = "edge", ifindex = 3 }]',
            "members[0] (id 'a').interfaces[0].exporter: must be the exporting router's address",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\ninterfaces = [{ exporter = "192.0.2.1", ifindex = -1 }]',
            "members[0] (id 'a').interfaces[0].ifindex: must be a whole number from 0 to 4294967295",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nvlans = [{ exporter = "192.0.2.1", vlan = 5000 }]',
            "members[0] (id 'a').vlans[0].vlan: must be a whole number from 0 to 4095",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\nvlans = [{ exporter = "192.0.2.1", vlan = 5 }]\n'
            '[[members]]\nid = "b"\nname = "B"\nvlans = [{ exporter = "192.0.2.1", vlan = 5 }]',
            "members[1] (id 'b').vlans[0]: VLAN 5 of exporter 192.0.2.1 is already claimed by member 'a'",
        ),
        (
            '[[members]]\nid = "a"\nname = "A"\ninterfaces = [{ exporter = "192.0.2.1", ifindex = 7, valid_to = 2026-11-20 }]\n'
            '[[members]]\nid = "b"\nname = "B"\ninterfaces = [{ exporter = "192.0.2.1", ifindex = 7, valid_from = 2026-11-15 }]',
            "members[1] (id 'b').interfaces[0]: interface 7 of exporter 192.0.2.1 is already claimed by member 'a' for an overlapping period",
        ),
        (
            '[registry]\ninternal_prefixes = ["10.255.0.0/16"]\n[[members]]\nid = "a"\nname = "A"\nprefixes = ["10.255.0.0/16"]',
            "registry.internal_prefixes[0]: 10.255.0.0/16 is already claimed by member 'a'",
        ),
        (
            '[registry]\ninternal_prefixes = ["10.255.0.1/16"]',
            "registry.internal_prefixes[0]: '10.255.0.1/16' has host bits set",
        ),
        ("[registry]\ncolour = 1", "registry.colour: unknown key"),
    ],
)
def test_registry_problems(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_non_overlapping_periods_may_share_a_prefix():
    config = parse_config(
        BASE
        + '[[members]]\nid = "a"\nname = "A"\nprefixes = [{ prefix = "10.9.0.0/24", valid_to = 2026-11-14 }]\n'
        '[[members]]\nid = "b"\nname = "B"\nprefixes = [{ prefix = "10.9.0.0/24", valid_from = 2026-11-15 }]\n'
    )
    assert [len(m.prefix_rules) for m in config.members] == [1, 1]


def test_warnings_for_overlaps_and_gaps():
    config = parse_config(
        BASE + '[[members]]\nid = "epci"\nname = "E"\nprefixes = ["10.0.0.0/8"]\n'
        '[[members]]\nid = "town"\nname = "T"\nprefixes = ["10.1.0.0/16"]\n'
        '[[members]]\nid = "empty"\nname = "Nobody"\n'
        '[[members]]\nid = "holes"\nname = "H"\nvalid_from = 2026-01-01\n'
        'prefixes = [{ prefix = "10.2.0.0/16", valid_from = 2026-01-01, valid_to = 2026-06-30 }]\n'
    )
    w = config.registry.warnings
    assert "overlap: 10.1.0.0/16 (town) lies inside 10.0.0.0/8 (epci); the longer prefix wins" in w
    assert "gap: member 'empty' has no rule at all (no traffic can be attributed to it)" in w
    assert "gap: member 'holes' has no rule valid on 2026-07-01 (inside its own validity)" in w
