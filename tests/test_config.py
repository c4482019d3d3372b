"""Configuration parsing and validation: the documented minimal form works as written, and
every problem gets one message naming its key and the reason."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from accounting.config import ConfigError, load_config, parse_config, resolve_config_path

MINIMAL = """
[storage]
database = "egress.duckdb"

[billing]
timezone = "Europe/Paris"   # months are local calendar months
bin_seconds = 300
percentile = 95
direction = "max"           # max(P95 in, P95 out) | sum | in | out

[contract]
monthly_eur = 4000.00       # what the operator invoices for the month

[[members]]
id = "mairie-a"
name = "Mairie de A"
prefixes = ["10.1.0.0/16", "2001:db8:1::/48"]

[[members]]
id = "cc-b"
name = "Communauté de communes B"
prefixes = ["10.2.0.0/16", "10.3.0.0/24"]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("/etc/egress/egress.toml"))
    return info.value.problems


def test_the_documented_minimal_config_works_as_written():
    config = parse_config(MINIMAL, Path("/srv/egress/egress.toml"))
    assert config.storage.database == Path("/srv/egress/egress.duckdb")
    assert config.billing.timezone == "Europe/Paris"
    assert config.billing.bin_seconds == 300
    assert config.billing.percentile == 95
    assert config.billing.direction == "max"
    assert config.contract.monthly_cents == 400_000
    assert [m.id for m in config.members] == ["mairie-a", "cc-b"]
    assert config.members[1].name == "Communauté de communes B"
    assert config.members[0].prefixes == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("2001:db8:1::/48"),
    )


def test_the_example_file_in_the_repository_is_valid():
    example = Path(__file__).resolve().parent.parent / "egress.example.toml"
    config = load_config(example)
    assert config.members and config.contract.monthly_cents > 0


def with_member(extra: str) -> str:
    return "[contract]\nmonthly_eur = 100\n" + extra


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            with_member('[[members]]\nid = "a"\nname = "A"\nprefixes = ["10.1.0.0/33"]'),
            "members[0] (id 'a').prefixes[0]: '10.1.0.0/33' is not a valid IPv4/IPv6 prefix",
        ),
        (
            with_member('[[members]]\nid = "a"\nname = "A"\nprefixes = ["10.1.2.3/16"]'),
            "members[0] (id 'a').prefixes[0]: '10.1.2.3/16' has host bits set (did you mean '10.1.0.0/16'?)",
        ),
        (
            with_member('[[members]]\nid = "a"\nname = "A"\nprefixes = ["10.1.2.3"]'),
            "members[0] (id 'a').prefixes[0]: '10.1.2.3' has no prefix length",
        ),
        (
            with_member('[[members]]\nid = "a"\nname = "A"\nprefixes = ["banana/8"]'),
            "members[0] (id 'a').prefixes[0]: 'banana/8' is not a valid IPv4/IPv6 prefix",
        ),
        (
            with_member('[[members]]\nid = "a"\nname = "A"\nprefixes = [42]'),
            "members[0] (id 'a').prefixes[0]: must be a string such as '10.1.0.0/16', got 42",
        ),
        (
            with_member(
                '[[members]]\nid = "a"\nname = "A"\nprefixes = ["10.1.0.0/16"]\n'
                '[[members]]\nid = "b"\nname = "B"\nprefixes = ["10.1.0.0/16"]'
            ),
            "members[1] (id 'b').prefixes[0]: 10.1.0.0/16 is already claimed by member 'a'",
        ),
        (
            with_member(
                '[[members]]\nid = "a"\nname = "A"\nprefixes = ["10.1.0.0/16", "10.1.0.0/16"]'
            ),
            "members[0] (id 'a').prefixes[1]: 10.1.0.0/16 is listed twice for this member",
        ),
        (
            with_member('[[members]]\nid = "a"\nname = "A"\n[[members]]\nid = "a"\nname = "A2"'),
            "members[1] (id 'a').id: duplicate member id 'a' (also members[0] (id 'a'))",
        ),
        (
            with_member('[[members]]\nid = "Mairie A"\nname = "A"'),
            "members[0] (id 'Mairie A').id: must be 1-64 characters of a-z, 0-9",
        ),
        (
            with_member('[[members]]\nname = "A"'),
            "members[0].id: must be 1-64 characters",
        ),
        (
            with_member('[[members]]\nid = "a"'),
            "members[0] (id 'a').name: must be a non-empty string",
        ),
        (
            with_member('[[members]]\nid = "a"\nname = "A"\nprefix = ["10.0.0.0/8"]'),
            "members[0] (id 'a').prefix: unknown key (allowed here: contact, flat_monthly_eur, id, interfaces,",
        ),
        (
            with_member('[billing]\ntimezone = "Europe/Pariss"'),
            "billing.timezone: unknown time zone 'Europe/Pariss'",
        ),
        (
            with_member("[billing]\nbin_seconds = 7"),
            "billing.bin_seconds: must be a whole number of seconds dividing 3600, got 7",
        ),
        (
            with_member("[billing]\npercentile = 101"),
            "billing.percentile: must be a whole number from 1 to 100, got 101",
        ),
        (
            with_member("[billing]\npercentile = 95.5"),
            "billing.percentile: must be a whole number from 1 to 100, got 95.5",
        ),
        (
            with_member('[billing]\ndirection = "both"'),
            "billing.direction: must be one of max, sum, in, out, got 'both'",
        ),
        (with_member("[billing]\ncolour = 1"), "billing.colour: unknown key"),
        (
            with_member("[storage]\ndatabase = 3"),
            "storage.database: must be a non-empty path string",
        ),
        (with_member("[surprise]\nx = 1"), "surprise: unknown key"),
        ("[storage]\n", "contract: missing table: give [contract] monthly_eur"),
        ("[contract]\n", "contract.monthly_eur: missing"),
        (
            "[contract]\nmonthly_eur = 10.005",
            "contract.monthly_eur: has more than two decimals: 10.005",
        ),
        (
            "[contract]\nmonthly_eur = -1",
            "contract.monthly_eur: must be a finite number >= 0, got -1",
        ),
        (
            '[contract]\nmonthly_eur = "4000"',
            "contract.monthly_eur: must be a number, got '4000'",
        ),
        ("[contract\nmonthly_eur = 1", "not valid TOML"),
        (
            "members = 3\n[contract]\nmonthly_eur = 1",
            "members: must be an array of tables: [[members]]",
        ),
    ],
)
def test_each_problem_has_a_message_naming_key_and_reason(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_are_reported_at_once():
    text = (
        "[billing]\npercentile = 0\ndirection = 'x'\n[contract]\nmonthly_eur = -3\n"
        '[[members]]\nid = "a"\nname = "A"\nprefixes = ["10.0.0.1/8", "nope"]'
    )
    found = problems(text)
    assert len(found) == 5, found
    assert "5 problem(s)" in str(ConfigError("x", found))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "file not found" in str(info.value)


def test_config_path_resolution_order(monkeypatch):
    monkeypatch.delenv("EGRESS_CONFIG", raising=False)
    assert resolve_config_path(None) == Path("egress.toml")
    monkeypatch.setenv("EGRESS_CONFIG", "/etc/egress.toml")
    assert resolve_config_path(None) == Path("/etc/egress.toml")
    assert resolve_config_path("mine.toml") == Path("mine.toml")


def test_nested_prefixes_of_different_members_are_allowed():
    config = parse_config(
        with_member(
            '[[members]]\nid = "epci"\nname = "EPCI"\nprefixes = ["10.0.0.0/8"]\n'
            '[[members]]\nid = "town"\nname = "Town"\nprefixes = ["10.9.0.0/24"]'
        )
    )
    assert len(config.members) == 2


def test_amounts_become_exact_cents():
    assert parse_config("[contract]\nmonthly_eur = 4123.45").contract.monthly_cents == 412_345
    assert parse_config("[contract]\nmonthly_eur = 0.1").contract.monthly_cents == 10
    assert parse_config("[contract]\nmonthly_eur = 7").contract.monthly_cents == 700
