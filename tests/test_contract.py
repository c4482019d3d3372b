"""The contract model: validation messages, the modelled invoice, fee, fixed part, game tariffs."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounting.contract import (
    ContractModel,
    MemberTerms,
    Tier,
    check_terms,
    mbps_of,
    round_half_up,
    weights_for,
)

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def model(**raw):
    m, problems = ContractModel.from_mapping(raw)
    assert problems == [], problems
    return m


def problems_of(raw):
    return ContractModel.from_mapping(raw)[1]


# ---- parsing and validation


def test_flat_contract():
    m = model(monthly_eur=4123.45)
    assert (m.kind, m.monthly_cents, m.tiers) == ("flat", 412345, ())
    assert m.invoice_cents(Fraction(0)) == m.invoice_cents(Fraction(10**6)) == 412345
    assert m.describe()[0] == "flat contract: 4123.45 € a month"


def test_commit_with_overage():
    m = model(monthly_eur=3000, commit_mbps=1000, overage_eur_per_mbps=4.5)
    assert m.kind == "commit"
    assert m.tiers == (Tier(Fraction(1000), Fraction(450)),)
    assert m.invoice_cents(Fraction(999)) == 300000
    assert m.invoice_cents(Fraction(1000)) == 300000
    assert m.invoice_cents(Fraction(1100)) == 300000 + 100 * 450
    # 0.001 Mb/s above: 0.45 cent, rounded half up to 0
    assert m.invoice_cents(Fraction(1000001, 1000)) == 300000
    assert m.invoice_cents(Fraction(1000002, 1000)) == 300001  # 0.9 cent
    assert any("commit 1000 Mb/s for 3000.00 €" in line for line in m.describe())


def test_graduated_tiers_and_rounding_up():
    m = model(
        monthly_eur=1000,
        commit_mbps=100,
        tiers=[
            {"from_mbps": 100, "eur_per_mbps": 5},
            {"from_mbps": 200, "eur_per_mbps": 3},
            {"from_mbps": 500, "eur_per_mbps": 2},
        ],
    )
    assert m.invoice_cents(Fraction(150)) == 100000 + 50 * 500
    assert m.invoice_cents(Fraction(300)) == 100000 + 100 * 500 + 100 * 300
    assert m.invoice_cents(Fraction(600)) == 100000 + 100 * 500 + 300 * 300 + 100 * 200
    up = model(monthly_eur=0, commit_mbps=10, overage_eur_per_mbps=1, round_up_mbps=True)
    assert up.invoice_cents(Fraction(101, 10)) == 100  # 0.1 above, billed as 1 Mb/s
    assert up.invoice_cents(Fraction(10)) == 0


def test_pure_95th_percentile_pricing():
    m = model(commit_mbps=0, overage_eur_per_mbps=10)
    assert m.monthly_cents == 0 and m.invoice_cents(Fraction(25, 2)) == 12500


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({}, "contract.monthly_eur", "missing"),
        ({"monthly_eur": -1}, "contract.monthly_eur", ">= 0"),
        ({"monthly_eur": 1.234}, "contract.monthly_eur", "more than two decimals"),
        ({"monthly_eur": "100"}, "contract.monthly_eur", "must be a number"),
        ({"monthly_eur": 1, "colour": 2}, "contract.colour", "unknown key"),
        ({"monthly_eur": 1, "commit_mbps": 100}, "contract.commit_mbps", "needs a price"),
        (
            {
                "commit_mbps": 100,
                "overage_eur_per_mbps": 1,
                "tiers": [{"from_mbps": 100, "eur_per_mbps": 1}],
            },
            "contract.tiers",
            "not both",
        ),
        (
            {"commit_mbps": 100, "tiers": [{"from_mbps": 50, "eur_per_mbps": 1}]},
            "contract.tiers[0].from_mbps",
            "start at the commit",
        ),
        (
            {
                "commit_mbps": 0,
                "tiers": [{"from_mbps": 0, "eur_per_mbps": 1}, {"from_mbps": 0, "eur_per_mbps": 2}],
            },
            "contract.tiers[1].from_mbps",
            "increasing",
        ),
        (
            {"commit_mbps": 0, "tiers": [{"from_mbps": 0}]},
            "contract.tiers[0].eur_per_mbps",
            "missing",
        ),
        ({"commit_mbps": 0, "tiers": []}, "contract.tiers", "non-empty"),
        ({"monthly_eur": 1, "fee_percent": 101}, "contract.fee_percent", "0 to 100"),
        ({"monthly_eur": 1, "fixed_weights": "size"}, "contract.fixed_weights", "one of"),
        ({"monthly_eur": 1, "fee_weights": "volume"}, "contract.fee_weights", "one of"),
        ({"monthly_eur": 1, "round_up_mbps": 1}, "contract.round_up_mbps", "true or false"),
    ],
)
def test_problems_name_the_key_and_the_reason(raw, key, reason):
    problems = problems_of(raw)
    assert any(p.startswith(f"{key}: ") and reason in p for p in problems), problems


def test_missing_or_wrong_table():
    assert "missing table" in ContractModel.from_mapping(None)[1][0]
    assert "must be a table" in ContractModel.from_mapping(3)[1][0]


def test_every_problem_is_listed_at_once():
    problems = problems_of({"monthly_eur": -5, "fee_percent": 200, "fixed_eur": 0.001, "x": 1})
    assert len(problems) == 4


# ---- invoice, fee and fixed part


rates = st.fractions(min_value=0, max_value=10_000, max_denominator=10**6)
contracts = st.builds(
    lambda monthly, commit, prices, gaps, up: model(
        monthly_eur=monthly,
        commit_mbps=commit,
        round_up_mbps=up,
        tiers=[
            {"from_mbps": commit + sum(gaps[:k]), "eur_per_mbps": p} for k, p in enumerate(prices)
        ],
    ),
    st.integers(0, 10_000),
    st.integers(0, 2000),
    st.lists(st.integers(0, 20), min_size=1, max_size=4),
    st.lists(st.integers(1, 500), min_size=4, max_size=4),
    st.booleans(),
)


@SETTINGS
@given(contracts, rates, rates)
def test_invoice_never_decreases_with_the_rate(m, a, b):
    lo, hi = min(a, b), max(a, b)
    assert m.monthly_cents <= m.invoice_cents(lo) <= m.invoice_cents(hi)


@SETTINGS
@given(contracts, st.integers(0, 10**12), st.sampled_from([60, 300, 900]))
def test_game_tariffs_price_like_the_invoice(m, bytes_per_bin, bin_seconds):
    rate = mbps_of(bytes_per_bin, bin_seconds)
    exact = m.monthly_cents + m.overage_cents(rate)
    contract = m.game_tariff("contract", bin_seconds).value(bytes_per_bin)
    overage = m.game_tariff("overage", bin_seconds).value(bytes_per_bin)
    tol = 1e-6 * max(1.0, float(exact))
    # rounding up to whole Mb/s: a float may land on either side of an exact boundary
    if not (m.round_up_mbps and (rate - m.commit_mbps).denominator == 1):
        assert contract == pytest.approx(float(exact), abs=tol)
        assert overage == pytest.approx(float(m.overage_cents(rate)), abs=tol)
    assert abs(m.invoice_cents(rate) - float(exact)) <= 0.5
    linear = m.game_tariff("linear", bin_seconds)
    assert linear.value(bytes_per_bin) == bytes_per_bin


def test_fee_and_fixed_part():
    m = model(monthly_eur=1000, fee_percent=5, fee_eur=80, fixed_percent=10, fixed_eur=50)
    assert m.fee(100000) == 5000 + 8000
    assert m.fee(33) == 2 + 8000  # 1.65 cent rounds half up to 2
    assert m.fixed_part(100000) == (10000 + 5000, None)
    capped, note = model(monthly_eur=10, fixed_eur=50).fixed_part(1000)
    assert capped == 1000 and "capped" in note
    commit = model(monthly_eur=3000, commit_mbps=100, overage_eur_per_mbps=2, fixed_commit=True)
    assert commit.fixed_part(commit.invoice_cents(Fraction(150))) == (300000, None)
    assert any("fixed part: the monthly price" in line for line in commit.describe())


def test_round_half_up():
    assert [round_half_up(Fraction(n, 2)) for n in range(6)] == [0, 1, 1, 2, 2, 3]
    assert round_half_up(Fraction(249, 100)) == 2


def test_flat_contract_game_is_constant():
    g = model(monthly_eur=500).game_tariff("contract", 300)
    assert g.value(0) == g.value(10**9) == 50000.0
    assert model(monthly_eur=500).game_tariff("overage", 300).value(10**9) == 0.0
    with pytest.raises(ValueError):
        model(monthly_eur=500).game_tariff("shapley", 300)


# ---- members


def test_member_terms():
    t, problems = MemberTerms.from_mapping(
        "lycee", {"population": 1200, "subscribed_mbps": 100, "flat_monthly_eur": 80, "name": "x"}
    )
    assert problems == []
    assert t == MemberTerms("lycee", 1200, Fraction(100), 8000)
    t, problems = MemberTerms.from_mapping(
        "x",
        {"population": -1, "subscribed_mbps": "lots", "flat_monthly_eur": 1.001},
        "members[2] (id 'x')",
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "members[2] (id 'x').flat_monthly_eur",
        "members[2] (id 'x').population",
        "members[2] (id 'x').subscribed_mbps",
    ]
    assert t == MemberTerms("x")


def test_weights_and_cross_check():
    terms = {"a": MemberTerms("a", 10, Fraction(5, 2)), "b": MemberTerms("b")}
    assert weights_for("equal", ["a", "b"], terms) == {"a": 1, "b": 1}
    assert weights_for("population", ["a", "b"], terms) == {"a": 10, "b": 0}
    assert weights_for("subscribed", ["a", "b"], terms) == {"a": Fraction(5, 2), "b": 0}
    where = {"a": "members[0] (id 'a')", "b": "members[1] (id 'b')"}
    m = model(monthly_eur=10, fixed_percent=50, fixed_weights="subscribed")
    assert check_terms(m, terms, where) == [
        "members[1] (id 'b').subscribed_mbps: missing, needed by the contract's 'subscribed' weights"
    ]
    # weights that split nothing need nothing
    assert check_terms(model(monthly_eur=10, fixed_weights="population"), terms, where) == []
    m = model(monthly_eur=10, fee_eur=5, fee_weights="population")
    assert len(check_terms(m, terms, where)) == 1


def test_mbps_is_exact():
    assert mbps_of(37_500_000, 300) == 1
    assert mbps_of(1, 300) == Fraction(8, 300_000_000)
    assert math.isclose(float(mbps_of(5_212_500, 300)), 0.139)
