"""Allocation rules in integer cents: efficiency, symmetry, null player, invariances, oracles."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from accounting.allocation import (
    largest_remainder,
    largest_remainder_exact,
    largest_remainder_rounded,
    split_or_equal,
    split_volume,
)
from accounting.percentile import percentile_band
from accounting.sharing import (
    RULES,
    Semantics,
    SharingPolicy,
    allocate,
    billed,
    prepare_usage,
    shapley_weights,
    split_by_weights,
    standalone_bytes,
)

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

directions = st.sampled_from(["max", "sum", "in", "out"])
amounts = st.integers(0, 10_000_000)
policies = st.builds(SharingPolicy, band_bins=st.integers(0, 3))


@st.composite
def traffic(draw, max_members=6, max_bins=40):
    M = draw(st.integers(1, max_members))
    B = draw(st.integers(1, max_bins))
    cell = st.one_of(st.just(0), st.integers(0, 1000))
    inbound = draw(arrays(np.int64, (M, B), elements=cell))
    outbound = draw(arrays(np.int64, (M, B), elements=cell))
    return inbound, outbound


def usage_of(inbound, outbound, direction="max", ids=None, percentile=95):
    ids = ids or [f"m{i:02d}" for i in range(inbound.shape[0])]
    return prepare_usage(ids, inbound, outbound, Semantics(percentile, direction))


# ---- efficiency, null player, symmetry, order, scale


@SETTINGS
@given(traffic(), directions, amounts, policies, st.sampled_from(RULES))
def test_every_rule_sums_to_the_cent(t, direction, amount, policy, rule):
    a = allocate(rule, usage_of(*t, direction), amount, policy)
    assert sum(a.cents) == amount
    assert all(c >= 0 for c in a.cents)
    assert len(a.cents) == len(a.member_ids) == t[0].shape[0]


@SETTINGS
@given(traffic(), directions, amounts, policies, st.sampled_from(RULES))
def test_null_player_pays_nothing(t, direction, amount, policy, rule):
    inbound, outbound = t
    assume(inbound.any() or outbound.any())
    inbound = np.vstack([inbound, np.zeros_like(inbound[:1])])
    outbound = np.vstack([outbound, np.zeros_like(outbound[:1])])
    a = allocate(rule, usage_of(inbound, outbound, direction), amount, policy)
    if a.used != "equal":  # nobody had traffic in the rule's terms: stated equal split
        assert a.cents[-1] == 0


@SETTINGS
@given(traffic(max_members=5), directions, amounts, policies, st.sampled_from(RULES))
def test_identical_members_pay_the_same_within_a_cent(t, direction, amount, policy, rule):
    inbound, outbound = t
    inbound = np.vstack([inbound, inbound[:1]])
    outbound = np.vstack([outbound, outbound[:1]])
    a = allocate(rule, usage_of(inbound, outbound, direction), amount, policy)
    assert abs(a.cents[0] - a.cents[-1]) <= 1


@SETTINGS
@given(traffic(), directions, amounts, policies, st.sampled_from(RULES), st.randoms())
def test_invariance_to_member_order(t, direction, amount, policy, rule, rnd):
    inbound, outbound = t
    ids = [f"m{i:02d}" for i in range(inbound.shape[0])]
    perm = list(range(len(ids)))
    rnd.shuffle(perm)
    a = allocate(rule, usage_of(inbound, outbound, direction, ids), amount, policy)
    b = allocate(
        rule,
        usage_of(inbound[perm], outbound[perm], direction, [ids[i] for i in perm]),
        amount,
        policy,
    )
    assert a.by_id() == b.by_id()


@SETTINGS
@given(traffic(), directions, amounts, policies, st.sampled_from(RULES), st.integers(2, 10**6))
def test_scale_invariance(t, direction, amount, policy, rule, k):
    inbound, outbound = t
    a = allocate(rule, usage_of(inbound, outbound, direction), amount, policy)
    b = allocate(rule, usage_of(inbound * k, outbound * k, direction), amount, policy)
    assert a.cents == b.cents


@SETTINGS
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=8),
    st.integers(1, 50),
    st.sampled_from(["sum", "in", "out", "max"]),
    amounts,
    policies,
)
def test_constant_traffic_makes_every_rule_proportional(rates, bins, direction, amount, policy):
    assume(any(rates))
    inbound = np.repeat(np.array(rates, np.int64)[:, None], bins, axis=1)
    outbound = inbound * 3  # both directions proportional to the same rates
    u = usage_of(inbound, outbound, direction)
    want = largest_remainder(amount, dict(zip(u.member_ids, rates, strict=True)))
    for rule in RULES:
        a = allocate(rule, u, amount, policy)
        assert a.by_id() == want, rule
        assert a.used == rule


# ---- oracles and fallbacks


def test_two_bursts_p95_own_falls_back_and_says_so():
    inbound = np.zeros((2, 100), np.int64)
    inbound[0, 10:14] = 10
    inbound[1, 60:64] = 10
    u = usage_of(inbound, np.zeros_like(inbound), "in", ["a", "b"])
    assert list(standalone_bytes(u)) == [0, 0]
    own = allocate("p95-own", u, 1000)
    assert own.used == "volume" and own.fell_back
    assert own.cents == (500, 500)
    assert any("own 95th is zero" in n and "fell back to volume" in n for n in own.notes)
    shap = allocate("shapley", u, 1000)
    assert shap.cents == (500, 500) and list(shap.shapley.values) == [5.0, 5.0]
    assert not shap.notes


def test_airport_game_in_cents():
    X = np.zeros((4, 100), np.int64)
    for i, c in enumerate((1, 3, 4, 7)):
        X[i, 25 * i : 25 * (i + 1)] = c
    u = usage_of(X, np.zeros_like(X), "in", ["a", "b", "c", "d"])
    a = allocate("shapley", u, 700)  # v(N) = 7: cents = 100 * phi
    assert a.cents == (25, 92, 142, 441)
    assert sum(a.cents) == 700


def test_nobody_has_traffic_equal_split_stated():
    z = np.zeros((3, 10), np.int64)
    for rule in RULES:
        a = allocate(rule, usage_of(z, z, "max", ["a", "b", "c"]), 100)
        assert a.cents == (34, 33, 33)
        assert a.used == "equal"
        assert any("split equally" in n for n in a.notes)


def test_p95_bin_band_uses_the_bins_around_the_rank():
    rng = np.random.default_rng(1)
    inbound = rng.integers(0, 100, size=(4, 200))
    u = usage_of(inbound, np.zeros_like(inbound), "in")
    agg = inbound.sum(axis=0)
    for band in (0, 2, 10):
        a = allocate("p95-bin", u, 10_000, SharingPolicy(band_bins=band))
        cols = percentile_band(agg, 95, band)
        assert a.band == tuple(cols)
        assert a.weights == tuple(int(w) for w in inbound[:, cols].sum(axis=1))
        assert len(a.band) == min(2 * band + 1, 200 - 190 + band + 1)


def test_p95_bin_counts_other_traffic_in_the_aggregate():
    inbound = np.array([[5, 5, 5, 5], [1, 1, 1, 9]], np.int64)
    u = prepare_usage(
        ["a", "b"],
        inbound,
        np.zeros_like(inbound),
        Semantics(percentile=75, direction="in"),
        other_in=np.array([0, 0, 100, 0]),
    )
    # with the unattributed burst, the bin setting the 75th is bin 3 (a 5, b 9)
    assert billed(u).bin == 3
    assert allocate("p95-bin", u, 1400).cents == (500, 900)


def test_billed_direction_under_max():
    inbound = np.array([[1, 2, 3, 4]], np.int64)
    assert billed(usage_of(inbound, inbound * 2, "max")).direction == "out"
    assert billed(usage_of(inbound, inbound, "max")).direction == "in"  # tie: in
    assert billed(usage_of(inbound, inbound, "sum")).bytes == 8


def test_shapley_monte_carlo_above_the_exact_limit():
    rng = np.random.default_rng(4)
    inbound = rng.integers(0, 1000, size=(30, 100)) * (rng.random((30, 100)) < 0.5)
    u = usage_of(inbound, np.zeros_like(inbound), "in")
    a = allocate("shapley", u, 10**6, SharingPolicy(exact_max_members=20, tolerance=0.05))
    assert a.shapley.method == "monte-carlo" and a.shapley.converged
    assert sum(a.cents) == 10**6
    exact = allocate("shapley", u, 10**6, SharingPolicy(exact_max_members=0, tolerance=0.05))
    assert exact.shapley.method == "monte-carlo"  # 0 means: always Monte Carlo


# ---- largest remainder


@SETTINGS
@given(
    st.integers(0, 10**9),
    st.dictionaries(
        st.text("abc", min_size=1, max_size=3),
        st.fractions(min_value=0, max_value=1000, max_denominator=50),
        min_size=1,
    ),
)
def test_largest_remainder_exact(total, weights):
    assume(any(weights.values()))
    shares = largest_remainder_exact(total, weights)
    assert sum(shares.values()) == total
    whole = sum(weights.values())
    for key, w in weights.items():
        exact = Fraction(total) * w / whole
        assert exact - 1 < shares[key] < exact + 1


def test_largest_remainder_ties_by_id():
    assert largest_remainder(2, {"b": 1, "a": 1, "c": 1}) == {"a": 1, "b": 1, "c": 0}
    assert largest_remainder_exact(1, {"z": Fraction(1, 2), "y": Fraction(1, 2)}) == {
        "z": 0,
        "y": 1,
    }
    assert split_or_equal(5, {"a": 0, "b": 0}) == ({"a": 3, "b": 2}, True)
    assert split_volume(10, {"a": 0})[1] is not None  # the foundation's API still works


def test_fixed_part_weights_and_shapley_weights():
    a = split_by_weights(1000, ["a", "b", "c"], {"a": 1, "b": 1, "c": 2}, "fixed:population")
    assert a.cents == (250, 250, 500) and a.used == "fixed:population"
    z = split_by_weights(10, ["a", "b"], {"a": 0, "b": 0}, "fixed:subscribed")
    assert z.cents == (5, 5) and z.used == "equal"
    assert shapley_weights(np.array([1.0, 1.0, 2.0])) == [2**38, 2**38, 2**39]
    assert shapley_weights(np.array([-1e-12, 1.0])) == [0, 2**40]


def test_semantics_and_policy_validation():
    with pytest.raises(ValueError):
        Semantics(direction="both")
    policy, problems = SharingPolicy.from_mapping(
        {"rule": "p95-bin", "band_bins": 3, "seed": 7, "compare": ["volume", "shapley"]}
    )
    assert problems == []
    assert (policy.rule, policy.band_bins, policy.seed, policy.compare) == (
        "p95-bin",
        3,
        7,
        ("volume", "shapley"),
    )
    _, problems = SharingPolicy.from_mapping(
        {"rule": "fair", "band_bins": -1, "tolerance": 2, "game": "x", "colour": 1}
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "sharing.band_bins",
        "sharing.colour",
        "sharing.game",
        "sharing.rule",
        "sharing.tolerance",
    ]


def test_rounded_remainders_tie_by_id():
    # exact shares 25, 91.67, 141.67, 441.67 of 700: the two cents left go to b and c
    # (ties broken by id), even though float rounding made d's remainder a hair larger
    phi = np.array([0.25, 0.9166666666666666, 1.4166666666666665, 4.416666666666667])
    weights = dict(zip("abcd", shapley_weights(phi), strict=True))
    assert largest_remainder_rounded(700, weights) == {"a": 25, "b": 92, "c": 142, "d": 441}
    assert sum(largest_remainder_rounded(10**9, {"a": 3, "b": 7}).values()) == 10**9
