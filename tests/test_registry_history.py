"""Registry versions in the database, the closed-month guard, and the members commands."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from accounting.config import parse_config
from accounting.registry_history import (
    PastChangeRefused,
    diff,
    first_open_day,
    latest_version,
    record_registry,
    registry_document,
)
from accounting.store import Store
from reports.cli import main

TZ = "Europe/Paris"
OPEN = first_open_day(TZ)  # first day of the current month: earlier days are closed
CLOSED_DAY = OPEN - dt.timedelta(days=10)
LATER_DAY = OPEN + dt.timedelta(days=5)


def config_text(move_day: dt.date, database: str = "egress.duckdb") -> str:
    return f"""
[storage]
database = "{database}"
[contract]
monthly_eur = 100
[[exporters]]
address = "192.0.2.1"
[registry]
internal_prefixes = ["10.255.0.0/16"]
[[members]]
id = "a"
name = "A"
population = 1000
prefixes = ["10.1.0.0/16", {{ prefix = "10.9.0.0/24", valid_to = {move_day - dt.timedelta(days=1)} }}]
[[members]]
id = "b"
name = "B"
prefixes = ["10.0.0.0/8", {{ prefix = "10.9.0.0/24", valid_from = {move_day} }}]
interfaces = [{{ exporter = "192.0.2.1", ifindex = 42 }}]
"""


def registry(text: str):
    return parse_config(text).registry


def test_versions_are_recorded_once_and_past_changes_refused(tmp_path):
    with Store.open(tmp_path / "e.duckdb") as store:
        first, v1 = record_registry(store, registry(config_text(LATER_DAY)), TZ)
        assert v1 == 1 and set(first.added_members) == {"a", "b"}
        again, none = record_registry(store, registry(config_text(LATER_DAY)), TZ)
        assert none is None and again.empty
        # Moving the change later inside the open month: allowed.
        later, v2 = record_registry(
            store, registry(config_text(LATER_DAY + dt.timedelta(days=3))), TZ
        )
        assert v2 == 2 and later.earliest_rule_change() == LATER_DAY
        # Moving it into a closed month: refused, nothing recorded.
        with pytest.raises(
            PastChangeRefused, match=f"from {CLOSED_DAY}, inside closed months"
        ) as info:
            record_registry(store, registry(config_text(CLOSED_DAY)), TZ)
        assert "members affected: a, b" in str(info.value)
        assert latest_version(store).version_id == 2
        _, v3 = record_registry(
            store, registry(config_text(CLOSED_DAY)), TZ, allow_past_changes=True
        )
        recorded = latest_version(store)
        assert v3 == 3 and recorded.note.startswith("past changes allowed by the user")


def test_attribute_only_changes_touch_no_rule():
    old = registry_document(registry(config_text(LATER_DAY)))
    new = registry_document(
        registry(config_text(LATER_DAY).replace("population = 1000", "population = 1200"))
    )
    change = diff(old, new)
    assert (
        change.changed_members == ["a"]
        and not change.added_rules
        and change.earliest_rule_change() is None
    )


def test_ingest_refuses_a_registry_that_rewrites_closed_months(tmp_path):
    from collector.synth.pcapwriter import write_capture

    capture = tmp_path / "empty.pcap"
    write_capture(capture, [])
    config = tmp_path / "egress.toml"
    config.write_text(config_text(LATER_DAY))
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", "-c", str(config), str(capture)]).exit_code == 0
    config.write_text(config_text(CLOSED_DAY))
    refused = runner.invoke(main, ["ingest", "-c", str(config), str(capture)])
    assert refused.exit_code == 1
    assert "inside closed months" in refused.output and "Traceback" not in refused.output
    diff_out = runner.invoke(main, ["members", "diff", "-c", str(config)]).output
    assert (
        f"rules change from {CLOSED_DAY} (changes closed months: needs --allow-past-changes)"
        in diff_out
    )
    assert runner.invoke(main, ["members", "apply", "-c", str(config)]).exit_code == 1
    applied = runner.invoke(main, ["members", "apply", "--allow-past-changes", "-c", str(config)])
    assert applied.exit_code == 0 and "recorded registry version 2" in applied.output
    assert runner.invoke(main, ["ingest", "-c", str(config), str(capture)]).exit_code == 0


def test_members_lookup_explains(tmp_path):
    config = tmp_path / "egress.toml"
    config.write_text(config_text(LATER_DAY))
    runner = CliRunner()

    def lookup(*args):
        result = runner.invoke(main, ["members", "lookup", "-c", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    before = lookup("10.9.0.5", "--at", str(LATER_DAY - dt.timedelta(days=1)))
    assert "a (A) by prefix 10.9.0.0/24" in before and "also inside 10.0.0.0/8 of b" in before
    after = lookup("10.9.0.5", "--at", str(LATER_DAY))
    assert (
        "b (B) by prefix 10.9.0.0/24" in after and "10.9.0.0/24 of a is not in force then" in after
    )
    assert "interface rule 192.0.2.1 ifIndex 42" in lookup(
        "100.64.0.1", "--exporter", "192.0.2.1", "--ifindex", "42"
    )
    assert "(internal)" in lookup("10.255.1.1") and "not billed" in lookup("10.255.1.1")
    assert "no member" in lookup("192.168.7.7")
    bad = runner.invoke(main, ["members", "lookup", "-c", str(config), "not-an-ip"])
    assert bad.exit_code == 2 and "is not an IP address" in bad.output
    bad = runner.invoke(
        main, ["members", "lookup", "-c", str(config), "10.1.1.1", "--ifindex", "3"]
    )
    assert bad.exit_code == 2 and "--ifindex and --vlan need --exporter" in bad.output


def test_members_check_and_list(tmp_path):
    config = tmp_path / "egress.toml"
    config.write_text(config_text(LATER_DAY))
    runner = CliRunner()
    check = runner.invoke(main, ["members", "check", "-c", str(config)])
    assert check.exit_code == 0
    assert (
        "warning: overlap: 10.1.0.0/16 (a) lies inside 10.0.0.0/8 (b); the longer prefix wins"
        in check.output
    )
    assert "OK, 2 members, 5 rules, 1 internal prefixes" in check.output
    listing = runner.invoke(main, ["members", "list", "-c", str(config)]).output
    assert "a\tA\tother\tvalid always\tpopulation 1,000" in listing
    assert "\tinterface 192.0.2.1 ifIndex 42\tvalid always" in listing
