"""`egress ingest` on NetFlow v9 and IPFIX captures and on IPFIX files (RFC 5655)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from collector.synth.ipfix import encode_ipfix
from collector.synth.model import DIR_IN, DIR_NONE, DIR_OUT, TrafficSpec
from collector.synth.netflow9 import TemplatedExporter
from collector.synth.scenario_v9 import templated_scenario
from reports.cli import main


def _truth(scenario):
    totals = scenario.truth.totals_by_owner()
    members = {
        m.id: (totals.get((i, DIR_IN), 0), totals.get((i, DIR_OUT), 0))
        for i, m in enumerate(scenario.members)
    }
    return members, totals.get((-2, DIR_NONE), 0)


def _report(config):
    result = CliRunner().invoke(main, ["report", "-c", str(config), "-m", "2026-11", "-f", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    return {m["id"]: (m["bytes_in"], m["bytes_out"]) for m in report["members"]}, report[
        "internal"
    ]["bytes"]


@pytest.mark.parametrize("protocol", ["v9", "ipfix"])
def test_templated_captures_through_the_cli(tmp_path, protocol):
    scenario = templated_scenario(
        tmp_path, protocol=protocol, members=15, spec=TrafficSpec(seed=4, flows=8000)
    )
    result = CliRunner().invoke(main, ["ingest", "-c", str(scenario.config), str(scenario.capture)])
    assert result.exit_code == 0, result.output
    assert _report(scenario.config) == _truth(scenario)


def test_ipfix_file_with_its_exporter_named_on_the_command_line(tmp_path):
    spec = TrafficSpec(seed=6, flows=5000)
    router = TemplatedExporter(
        "192.0.2.77", domain=3, boot_ms=spec.start_ms - 1000, time_mode="ms", destination_port=4739
    )
    scenario = templated_scenario(
        tmp_path / "gen", protocol="ipfix", members=10, spec=spec, exporters=[router]
    )
    messages = b"".join(d.payload for d in encode_ipfix(scenario.flows, [router]))
    path = tmp_path / "flows.ipfix"
    path.write_bytes(messages)
    config = tmp_path / "egress.toml"
    config.write_text(scenario.config.read_text())
    runner = CliRunner()
    undeclared = runner.invoke(main, ["ingest", "-c", str(config), str(path)])
    assert undeclared.exit_code == 0
    assert "0.0.0.0" in undeclared.output  # messages attributed to 0.0.0.0: not declared, dropped
    (tmp_path / "egress.duckdb").unlink()
    named = runner.invoke(
        main, ["ingest", "-c", str(config), "--exporter", "192.0.2.77", str(path)]
    )
    assert named.exit_code == 0, named.output
    assert _report(config) == _truth(scenario)
    bad = runner.invoke(main, ["ingest", "-c", str(config), "--exporter", "router-1", str(path)])
    assert bad.exit_code == 2 and "is not an IP address" in bad.output
