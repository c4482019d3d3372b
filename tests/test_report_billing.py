"""The monthly report with the billing core: contract model, operator's invoice, fee,
fixed part, rules side by side, members' validity, and every amount adding up."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from collector.synth.model import TrafficSpec
from collector.synth.scenario import v5_scenario
from reports.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bill")
    scenario = v5_scenario(directory, members=8, spec=TrafficSpec(seed=12, flows=6_000))
    assert run("ingest", "-c", str(scenario.config), str(scenario.capture)).exit_code == 0
    return scenario


def report(config) -> dict:
    result = run("report", "-c", str(config), "-m", "2026-11", "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def with_text(base, tmp_path, old: str, new: str):
    text = base.config.read_text().replace(old, new, 1)
    assert text != base.config.read_text() or old == new
    config = tmp_path / "egress.toml"
    config.write_text(
        text.replace(
            'database = "egress.duckdb"', f'database = "{base.config.parent / "egress.duckdb"}"'
        )
    )
    return config


def test_amounts_add_up_under_a_commit_contract_with_fee_and_fixed_part(base, tmp_path):
    contract = (
        "[contract]\nmonthly_eur = 1000.00\ncommit_mbps = 0.001\noverage_eur_per_mbps = 5.00\n"
        'fixed_percent = 20\nfixed_weights = "equal"\nfee_percent = 5\n'
    )
    config = with_text(base, tmp_path, "[contract]\nmonthly_eur = 4000.00\n", contract)
    r = report(config)
    inv = r["invoice"]
    assert inv["actual_cents"] is None and inv["used_cents"] == inv["modelled_cents"] > 100_000
    assert inv["fee_cents"] == round(inv["used_cents"] * 5 / 100)
    assert inv["fixed_cents"] == round(inv["used_cents"] * 20 / 100)
    assert inv["fixed_cents"] + inv["usage_cents"] == inv["used_cents"]
    members = r["members"]
    assert sum(m["share_cents"] for m in members) == inv["used_cents"] + inv["fee_cents"]
    assert sum(m["invoice_cents"] for m in members) == inv["used_cents"]
    for rule in r["method"]["compared_rules"]:
        assert sum(m["alternatives_cents"][rule] for m in members) == inv["used_cents"], rule
    fixed = [m["fixed_cents"] for m in members]
    assert max(fixed) - min(fixed) <= 1  # equal weights


def test_operator_invoice_takes_precedence(base, tmp_path):
    config = with_text(base, tmp_path, "monthly_eur = 4000.00", "monthly_eur = 4000.00")
    result = run(
        "invoice",
        "set",
        "-c",
        str(config),
        "--month",
        "2026-11",
        "--eur",
        "4123,45",
        "--note",
        "F-1187",
    )
    assert result.exit_code == 0 and "4123.45 EUR recorded" in result.output
    try:
        r = report(config)
        assert r["invoice"]["actual_cents"] == 412_345 and r["invoice"]["modelled_cents"] == 400_000
        assert sum(m["share_cents"] for m in r["members"]) == 412_345
        assert (
            run("invoice", "show", "-c", str(config), "-m", "2026-11").output.strip()
            == "2026-11: 4123.45 EUR"
        )
        table = run("report", "-c", str(config), "-m", "2026-11").output
        assert "operator's invoice 4123.45 € (used; modelled 4000.00 €)" in table
    finally:
        again = run("invoice", "set", "-c", str(config), "--month", "2026-11", "--eur", "4000")
        assert "replaces 4123.45 EUR" in again.output
    bad = CliRunner().invoke(
        main, ["invoice", "set", "-c", str(config), "-m", "2026-11", "--eur", "12.345"]
    )
    assert bad.exit_code == 2 and "at most two decimals" in bad.output


def test_chosen_rule_and_reproducibility(base, tmp_path):
    config = with_text(
        base,
        tmp_path,
        "[contract]",
        '[sharing]\nrule = "p95-bin"\ncompare = ["volume", "p95-bin"]\n\n[contract]',
    )
    r = report(config)
    assert r["allocation"]["rule"] == "p95-bin"
    assert sorted(r["method"]["compared_rules"]) == ["p95-bin", "volume"]
    assert all(m["invoice_cents"] == m["alternatives_cents"]["p95-bin"] for m in r["members"])
    assert r["reproducibility"].startswith("rule p95-bin")
    billed = r["aggregate"]["billed_bins"]["billed"]
    assert (
        billed["start_utc"] >= r["period"]["start_utc"]
        and billed["start_utc"] < r["period"]["end_utc"]
    )


def test_flat_subscriptions_and_recovery(base, tmp_path):
    config = with_text(
        base, tmp_path, 'name = "Membre 0"', 'name = "Membre 0"\nflat_monthly_eur = 80.00'
    )
    r = report(config)
    m0 = next(m for m in r["members"] if m["id"] == "m0000")
    assert m0["flat_cents"] == 8000
    assert m0["balance_cents"] == 8000 - m0["share_cents"]
    assert m0["recovery"] == pytest.approx(8000 / m0["share_cents"])
    others = [m for m in r["members"] if m["id"] != "m0000"]
    assert all(m["flat_cents"] is None and m["balance_cents"] is None for m in others)


def test_members_not_valid_in_the_month_are_left_out(base, tmp_path):
    config = with_text(
        base, tmp_path, 'name = "Membre 7"', 'name = "Membre 7"\nvalid_to = 2026-09-30'
    )
    r = report(config)
    ids = [m["id"] for m in r["members"]]
    # m0007 left before November; its stored usage (attributed while it was a member)
    # still counts, under its recorded name.
    m7 = next(m for m in r["members"] if m["id"] == "m0007")
    assert not m7["in_configuration"] and m7["name"] == "Membre 7"
    assert ids[-1] == "m0007"
    assert any("not in the configuration for this month: m0007" in n for n in r["notes"])


def test_missing_bins_counted_as_zero(base, tmp_path):
    config = with_text(base, tmp_path, 'direction = "max"', 'direction = "max"\nmissing = "zero"')
    r = report(config)
    assert r["method"]["missing_bins"] == "zero"
    assert r["bins"]["used"] == r["bins"]["in_month"]
    # With 8,640 bins of which only a few hundred hold data, the 95th of zeros is 0.
    assert r["aggregate"]["billed_bps"] == 0.0
