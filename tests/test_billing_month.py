"""The month's bill: every cent accounted for, parts that add up, the report's facts."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from accounting.billing import bill_month, usage_hash
from accounting.bins import billing_month
from accounting.contract import ContractModel, MemberTerms, weights_for
from accounting.sharing import (
    RULES,
    Semantics,
    SharingPolicy,
    allocate,
    prepare_usage,
    split_by_weights,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def contract(**raw):
    m, problems = ContractModel.from_mapping(raw)
    assert problems == [], problems
    return m


contracts = st.one_of(
    st.builds(
        lambda monthly, fee, fee_eur, fixed, fixed_eur, w, fw: contract(
            monthly_eur=monthly,
            fee_percent=fee,
            fee_eur=fee_eur,
            fixed_percent=fixed,
            fixed_eur=fixed_eur,
            fixed_weights=w,
            fee_weights=fw,
        ),
        st.integers(0, 100_000),
        st.integers(0, 20),
        st.integers(0, 500),
        st.integers(0, 100),
        st.integers(0, 2000),
        st.sampled_from(["equal", "population", "subscribed"]),
        st.sampled_from(["share", "equal", "population", "subscribed"]),
    ),
    st.builds(
        lambda monthly, commit, price, fixed_commit: contract(
            monthly_eur=monthly,
            commit_mbps=commit,
            overage_eur_per_mbps=price,
            fixed_commit=fixed_commit,
        ),
        st.integers(0, 10_000),
        st.integers(0, 3),
        st.integers(1, 1000),
        st.booleans(),
    ),
)


@st.composite
def months(draw, max_members=6, max_bins=30):
    M = draw(st.integers(1, max_members))
    B = draw(st.integers(1, max_bins))
    # up to ~1 Mb/s per bin of 300 s, so that commit contracts see overage
    cell = st.one_of(st.just(0), st.integers(0, 40_000_000))
    inbound = draw(arrays(np.int64, (M, B), elements=cell))
    outbound = draw(arrays(np.int64, (M, B), elements=cell))
    ids = [f"m{i}" for i in range(M)]
    terms = {
        mid: MemberTerms(
            mid,
            draw(st.integers(0, 5000)),
            Fraction(draw(st.integers(0, 1000))),
            draw(st.one_of(st.none(), st.integers(0, 50_000))),
        )
        for mid in ids
    }
    direction = draw(st.sampled_from(["max", "sum", "in", "out"]))
    return prepare_usage(ids, inbound, outbound, Semantics(direction=direction)), terms


@SETTINGS
@given(
    months(),
    contracts,
    st.sampled_from(RULES),
    st.one_of(st.none(), st.integers(0, 10**7)),
)
def test_every_cent_is_accounted_for(month, model, rule, actual):
    usage, terms = month
    policy = SharingPolicy(rule=rule)
    bill = bill_month(usage, model, terms, policy, actual_invoice_cents=actual)
    invoice = actual if actual is not None else model.invoice_cents(bill.billed_mbps)
    assert bill.invoice_cents == invoice
    assert bill.fee_cents == model.fee(invoice)
    assert bill.fixed_cents + bill.usage_cents == invoice
    assert sum(m.total_cents for m in bill.members) == invoice + bill.fee_cents
    assert sum(m.invoice_cents for m in bill.members) == invoice
    assert sum(m.fee_cents for m in bill.members) == bill.fee_cents
    assert sum(m.fixed_cents for m in bill.members) == bill.fixed_cents
    for r in RULES:  # side by side: every rule shares the same invoice
        assert sum(m.alternatives[r] for m in bill.members) == invoice
    for m in bill.members:
        assert m.alternatives[rule] == m.invoice_cents
        assert m.exceeds_standalone == (m.invoice_cents > m.standalone_cents)
        if m.flat_cents is not None:
            assert m.balance_cents == m.flat_cents - m.total_cents
            if m.total_cents:
                assert m.recovery == Fraction(m.flat_cents, m.total_cents)


@SETTINGS
@given(months(), contracts, st.sampled_from(RULES))
def test_fixed_part_plus_usage_part_is_the_sum_of_both(month, model, rule):
    """Additivity: the bill splits as the fixed part alone plus the usage part alone."""
    usage, terms = month
    bill = bill_month(usage, model, terms, SharingPolicy(rule=rule))
    ids = usage.member_ids
    fixed = split_by_weights(
        bill.fixed_cents, ids, weights_for(model.fixed_weights, ids, terms), "fixed"
    )
    alone = allocate(rule, usage, bill.usage_cents)
    assert [m.fixed_cents for m in bill.members] == list(fixed.cents)
    assert [m.usage_cents for m in bill.members] == list(alone.cents)
    assert [m.invoice_cents for m in bill.members] == [
        f + u for f, u in zip(fixed.cents, alone.cents, strict=True)
    ]


@SETTINGS
@given(months(), st.sampled_from(RULES), st.integers(1, 100_000))
def test_null_player_pays_only_the_fixed_part(month, rule, monthly):
    usage, _ = month
    assume(usage.inbound.any() or usage.outbound.any())
    ids = [*usage.member_ids, "silent"]
    z = np.zeros((1, usage.bins), np.int64)
    usage = prepare_usage(
        ids,
        np.vstack([usage.inbound, z]),
        np.vstack([usage.outbound, z]),
        usage.semantics,
    )
    model = contract(monthly_eur=monthly, fixed_percent=20)
    bill = bill_month(usage, model, {}, SharingPolicy(rule=rule))
    silent = bill.members[-1]
    if bill.allocation.used != "equal":
        assert silent.usage_cents == 0
    assert silent.fixed_cents == bill.fixed.by_id()["silent"] > 0


def test_operator_invoice_takes_precedence_and_is_shown_beside():
    x = np.full((2, 10), 37_500_000, np.int64)  # 1 Mb/s each, 2 Mb/s together
    usage = prepare_usage(["a", "b"], x, x // 2)
    model = contract(monthly_eur=100, commit_mbps=1, overage_eur_per_mbps=10)
    modelled = bill_month(usage, model)
    assert modelled.billed_mbps == 2 and modelled.invoice_cents == 10000 + 1000
    real = bill_month(usage, model, actual_invoice_cents=12345)
    assert (real.invoice_cents, real.modelled_invoice_cents) == (12345, 11000)
    assert any("differs from the modelled one" in n for n in real.notes)
    assert any("operator's invoice 123.45 €" in line for line in real.summary())
    assert sum(m.total_cents for m in real.members) == 12345


def test_fee_on_top_split_by_share():
    x = np.array([[3] * 20, [1] * 20], np.int64)
    usage = prepare_usage(["a", "b"], x, x)
    bill = bill_month(usage, contract(monthly_eur=1000, fee_percent=5, fee_eur=80))
    assert bill.fee_cents == 5000 + 8000
    a, b = bill.members
    assert (a.invoice_cents, b.invoice_cents) == (75000, 25000)
    assert (a.fee_cents, b.fee_cents) == (9750, 3250)
    assert bill.total_cents == 113000


def test_standalone_cost_flag_and_recovery():
    # pure 95th pricing; two members bursting apart: alone each would pay 0
    x = np.zeros((2, 100), np.int64)
    x[0, 10:14] = 375_000_000  # 10 Mb/s
    x[1, 60:64] = 375_000_000
    usage = prepare_usage(["a", "b"], x, np.zeros_like(x), Semantics(direction="in"))
    model = contract(commit_mbps=0, overage_eur_per_mbps=10)
    terms = {"a": MemberTerms("a", flat_monthly_cents=8000), "b": MemberTerms("b")}
    bill = bill_month(usage, model, terms, SharingPolicy(rule="shapley"))
    assert bill.invoice_cents == 10000
    a, b = bill.members
    assert (a.invoice_cents, b.invoice_cents) == (5000, 5000)
    assert a.standalone_cents == b.standalone_cents == 0
    assert a.exceeds_standalone and b.exceeds_standalone
    assert any("above the stand-alone cost" in n for n in bill.notes)
    assert a.recovery == Fraction(8, 5) and a.balance_cents == 3000  # subsidises others
    assert b.recovery is None
    assert any("p95-own" in n and "fell back" in n for n in bill.alternatives["p95-own"].notes)


def test_reproducibility_line_and_hash():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10**6, size=(25, 60))
    usage = prepare_usage([f"m{i:02d}" for i in range(25)], x, x // 3)
    policy = SharingPolicy(rule="shapley", seed=99, tolerance=0.05, compare=("shapley",))
    bill = bill_month(usage, contract(monthly_eur=1000), policy=policy)
    result = bill.allocation.shapley
    assert result.method == "monte-carlo"  # 25 members > exact_max_members
    line = bill.reproducibility()
    assert "rule shapley" in line and "seed 99" in line
    assert f"{result.permutations} join orders ({result.pairs} antithetic pairs)" in line
    assert f"usage blake2b {usage_hash(usage)}" in line and "egress " in line
    again = bill_month(usage, contract(monthly_eur=1000), policy=policy)
    assert [m.usage_cents for m in again.members] == [m.usage_cents for m in bill.members]
    x2 = x.copy()
    x2[3, 7] += 1
    assert usage_hash(prepare_usage(usage.member_ids, x2, x // 3)) != usage_hash(usage)
    small = bill_month(
        prepare_usage(["a", "b"], x[:2], x[:2]),
        contract(monthly_eur=1),
        policy=SharingPolicy(rule="shapley"),
    )
    assert "Shapley exact over 2^2 coalitions" in small.reproducibility()


def test_dst_month_summary_states_the_semantics():
    bm = billing_month("2026-03", "Europe/Paris", 300)
    cols = np.arange(0, bm.bin_count - 16)  # the last 16 bins without data
    x = np.ones((2, len(cols)), np.int64)
    for missing, n in (("exclude", bm.bin_count - 16), ("zero", 8916)):
        usage = prepare_usage(
            ["a", "b"],
            x,
            x,
            Semantics(missing=missing),
            bin_numbers=cols,
            bins_in_month=bm.bin_count,
        )
        bill = bill_month(usage, contract(monthly_eur=10), month=bm.label)
        text = "\n".join(bill.summary())
        assert f"bins: {n} used of 8916 in the month, 16 without data" in text
        assert "nearest rank: r = ceil(95 n / 100)" in text
        assert "max(P95 in, P95 out)" in text
        assert bill.month == "2026-03"


def test_no_members():
    z = np.zeros((0, 5), np.int64)
    bill = bill_month(prepare_usage([], z, z), contract(monthly_eur=10))
    assert bill.members == () and any("no members" in n for n in bill.notes)


def test_billed_bins_are_month_bin_numbers_and_intervals_in_cents():
    bm = billing_month("2026-11", "Europe/Paris", 300)
    cols = np.arange(100, 300)  # data from the 101st bin on
    rng = np.random.default_rng(2)
    x = rng.integers(0, 1000, size=(30, len(cols)))
    x[:, 150] += 10**6  # a burst in column 150, bin 250 of the month
    usage = prepare_usage(
        [f"m{i:02d}" for i in range(30)],
        x,
        x // 2,
        Semantics(percentile=100),
        bin_numbers=cols,
        bins_in_month=bm.bin_count,
    )
    policy = SharingPolicy(rule="shapley", tolerance=0.05, compare=("shapley", "volume"))
    bill = bill_month(usage, contract(monthly_eur=100), policy=policy)
    assert bill.billed_bins["billed"] == bill.billed_bins["in"] == 250
    half = bill.allocation.halfwidth_cents()
    assert half is not None and len(half) == 30 and all(h >= 0 for h in half)
    assert bill.alternatives["volume"].halfwidth_cents() is None
