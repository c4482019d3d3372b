"""[collector] and [[exporters]]: validation, the allow-list, sampling rates and uplinks."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from accounting.collector_config import ListenAddress, parse_listen
from accounting.config import ConfigError, parse_config
from accounting.exporters import ExporterPolicy
from collector.datagrams import DatagramBatch, address_to_pair
from collector.synth.model import (
    DIR_IN,
    DIR_NONE,
    DIR_OUT,
    TrafficSpec,
    generate_flows,
    make_members,
)
from collector.synth.netflow5 import V5Exporter, encode_v5
from collector.synth.pcapwriter import write_capture
from collector.synth.scenario import config_text
from collector.synth.truth import ground_truth
from reports.cli import main

BASE = "[contract]\nmonthly_eur = 100\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + text, Path("/etc/egress/egress.toml"))
    return info.value.problems


def test_collector_defaults():
    config = parse_config(BASE, Path("/srv/e/egress.toml"))
    c = config.collector
    assert [str(a) for a in c.listen] == ["0.0.0.0:2055", "[::]:2055", "0.0.0.0:4739", "[::]:4739"]
    assert c.flush_seconds == 10.0 and c.workers == 1 and not c.allow_unknown_exporters
    assert c.state_dir == Path("/srv/e/egress-state")
    assert c.metrics_listen is None
    assert config.exporters == ()


def test_collector_and_exporters_parse():
    config = parse_config(
        BASE
        + """
[collector]
listen = ["127.0.0.1:9995", "[::1]:9996"]
flush_seconds = 2.5
metrics_listen = "127.0.0.1:9108"
state_dir = "/var/lib/egress"

[[exporters]]
address = "192.0.2.1"
name = "edge-1"
sampling_rate = 1000
uplinks = [1, 2]

[[exporters]]
address = "2001:db8::1"
sampling_rate = 64
override_sampling = true
"""
    )
    assert config.collector.listen == (ListenAddress("127.0.0.1", 9995), ListenAddress("::1", 9996))
    assert config.collector.metrics_listen == ListenAddress("127.0.0.1", 9108)
    assert config.collector.state_dir == Path("/var/lib/egress")
    a, b = config.exporters
    assert (str(a.address), a.name, a.sampling_rate, a.uplinks) == (
        "192.0.2.1",
        "edge-1",
        1000,
        (1, 2),
    )
    assert (b.name, b.override_sampling) == ("2001:db8::1", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[collector]\nlisten = ["0.0.0.0"]', "collector.listen[0]: '0.0.0.0' is not HOST:PORT"),
        ('[collector]\nlisten = ["0.0.0.0:70000"]', "collector.listen[0]: port 70000 out of range"),
        (
            '[collector]\nlisten = ["example.org:2055"]',
            "collector.listen[0]: 'example.org' does not appear to be an IPv4 or IPv6 address",
        ),
        ("[collector]\nlisten = []", "collector.listen: must be a non-empty list"),
        (
            '[collector]\nlisten = ["[::]:2055", "[::]:2055"]',
            "collector.listen: lists the same address twice",
        ),
        (
            "[collector]\nflush_seconds = 0",
            "collector.flush_seconds: must be a number of seconds from 0.1 to 3600",
        ),
        ("[collector]\nworkers = 0", "collector.workers: must be an integer from 1 to 64"),
        (
            "[collector]\nallow_unknown_exporters = 1",
            "collector.allow_unknown_exporters: must be true or false",
        ),
        (
            "[collector]\nreceive_buffer_bytes = 10",
            "collector.receive_buffer_bytes: must be an integer from 65536",
        ),
        ("[collector]\nport = 2055", "collector.port: unknown key"),
        (
            '[[exporters]]\naddress = "router-1"',
            "exporters[0].address: must be the router's IPv4 or IPv6 address, got 'router-1'",
        ),
        (
            '[[exporters]]\naddress = "192.0.2.1"\n[[exporters]]\naddress = "192.0.2.1"',
            "exporters[1].address: 192.0.2.1 is already declared as exporters[0]",
        ),
        (
            '[[exporters]]\naddress = "192.0.2.1"\nsampling_rate = 0',
            "exporters[0].sampling_rate: must be an integer >= 1",
        ),
        (
            '[[exporters]]\naddress = "192.0.2.1"\noverride_sampling = true',
            "exporters[0].override_sampling: needs sampling_rate",
        ),
        (
            '[[exporters]]\naddress = "192.0.2.1"\nuplinks = ["ge-0/0/0"]',
            "exporters[0].uplinks: must be a list of interface indexes",
        ),
        (
            '[[exporters]]\naddress = "192.0.2.1"\nuplinks = [1, 1]',
            "exporters[0].uplinks: lists an interface twice",
        ),
        (
            '[[exporters]]\naddress = "192.0.2.1"\nsampling = 10',
            "exporters[0].sampling: unknown key",
        ),
    ],
)
def test_collector_and_exporter_problems(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_parse_listen_forms():
    assert parse_listen("[2001:db8::1]:2055") == ListenAddress("2001:db8::1", 2055)
    assert str(parse_listen("0.0.0.0:4739")) == "0.0.0.0:4739"
    with pytest.raises(ValueError):
        parse_listen("[::1]2055")


def _policy(text: str) -> ExporterPolicy:
    config = parse_config(BASE + text)
    return ExporterPolicy(config.exporters, config.collector.allow_unknown_exporters)


def test_allow_list_drops_and_counts_per_source():
    policy = _policy('[[exporters]]\naddress = "192.0.2.1"\n[[exporters]]\naddress = "2001:db8::1"')
    batch = DatagramBatch.from_payloads(
        [b"a", b"b", b"c", b"d", b"e"],
        ["192.0.2.1", "192.0.2.9", "2001:db8::1", "192.0.2.9", "2001:db8::9"],
    )
    dropped: Counter = Counter()
    kept = policy.filter_datagrams(batch, dropped)
    assert [bytes(kept.payload(i)) for i in range(len(kept))] == [b"a", b"c"]
    assert dropped == {"192.0.2.9": 2, "2001:db8::9": 1}
    everyone = _policy("[collector]\nallow_unknown_exporters = true")
    assert len(everyone.filter_datagrams(batch, dropped)) == 5


def test_configured_sampling_rates_reach_the_decoder():
    from test_netflow5 import v5_datagram

    from collector.decode import Decoder

    policy = _policy(
        '[[exporters]]\naddress = "192.0.2.1"\nsampling_rate = 100\n'
        '[[exporters]]\naddress = "192.0.2.2"\nsampling_rate = 64\noverride_sampling = true'
    )
    sampling = policy.sampling_policy()
    assert sampling.defaults == {"192.0.2.1": 100, "192.0.2.2": 64}
    assert sampling.overrides == {"192.0.2.2": 64}
    decoder = Decoder(sampling=sampling)
    batch = DatagramBatch.from_payloads(
        [
            v5_datagram(1, sampling=(1 << 14) | 10),
            v5_datagram(1, sampling=(1 << 14) | 10),
            v5_datagram(1),
        ],
        ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
    )
    flows = decoder.decode(batch).flows
    # v5 carries its own rate (10) unless overridden (64); no rate in v5 means unsampled.
    assert sorted(flows.sampling_interval.tolist()) == [1, 10, 64]


def test_same_flows_from_two_routers_are_billed_once_with_uplinks(tmp_path):
    """Router A sees the internet on ifIndex 1; router B sees the same flows between two
    internal interfaces. With uplinks declared, only A's copy is billed; B's copy lands in
    'not_uplink'; unattributed flows get their direction from A's uplink side."""
    members = make_members(8, ipv6=False)
    spec = TrafficSpec(seed=3, flows=4000, exporters=1)
    flows = generate_flows(members, spec)
    a_copy = flows
    b_copy = replace(
        flows,
        exporter=np.zeros(len(flows), np.int32),
        input_if=np.full(len(flows), 7, np.uint16),
        output_if=np.full(len(flows), 8, np.uint16),
    )
    router_a = V5Exporter("192.0.2.21", boot_ms=spec.start_ms - 1000)
    router_b = V5Exporter("192.0.2.22", boot_ms=spec.start_ms - 5000)
    datagrams = encode_v5(a_copy, [router_a]) + encode_v5(b_copy, [router_b])
    datagrams.sort(key=lambda d: d.time_ns)
    capture = tmp_path / "two-routers.pcap"
    write_capture(capture, datagrams)
    config = tmp_path / "egress.toml"
    text = config_text(members).replace(
        "[[members]]",
        '[[exporters]]\naddress = "192.0.2.21"\nuplinks = [1]\n\n'
        '[[exporters]]\naddress = "192.0.2.22"\nuplinks = [1]\n\n[[members]]',
        1,
    )
    config.write_text(text)
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", "-c", str(config), str(capture)])
    assert result.exit_code == 0, result.output
    report = json.loads(
        runner.invoke(main, ["report", "-c", str(config), "-m", "2026-11", "-f", "json"]).output
    )

    truth = ground_truth(flows, np.array([1]), 300_000).totals_by_owner()
    by_member = {m["id"]: (m["bytes_in"], m["bytes_out"]) for m in report["members"]}
    assert by_member == {
        m.id: (truth.get((i, DIR_IN), 0), truth.get((i, DIR_OUT), 0)) for i, m in enumerate(members)
    }
    assert report["internal"]["bytes"] == truth[(-2, DIR_NONE)]
    # Unattributed flows: the generator sends "upload" ones out of ifIndex 1 and the others in.
    unattributed = flows.owner == -1
    upload = flows.output_if == 1
    rate = np.int64(1)
    assert (
        report["unattributed"]["bytes_out"]
        == int((flows.octets[unattributed & upload]).sum()) * rate
    )
    assert (
        report["unattributed"]["bytes_in"]
        == int((flows.octets[unattributed & ~upload]).sum()) * rate
    )
    assert report["unattributed"]["bytes_unknown_direction"] == 0
    assert report["not_uplink"]["bytes"] == int(flows.octets.sum())


def test_exporter_address_forms_are_equivalent():
    policy = _policy('[[exporters]]\naddress = "::ffff:192.0.2.1"')
    assert policy.declared(address_to_pair(ipaddress.ip_address("192.0.2.1"))) is not None
