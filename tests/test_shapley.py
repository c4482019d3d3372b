"""Shapley values of the 95th-percentile cost game: definition, axioms, oracles, Monte Carlo.

The slow reference is the definition itself: the average over all join orders of each
member's marginal contribution, with v(S) computed by sorting (``coalition_value``).
"""

from __future__ import annotations

import itertools
import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from accounting.contract import ContractModel, GameTariff
from accounting.percentile import percentile_value
from accounting.shapley import (
    LINEAR,
    _kth_largest,
    _tariff,
    coalition_value,
    shapley_exact,
    shapley_monte_carlo,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# statistical tests: fixed examples, so that a run cannot fail by bad luck one day
STAT_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def reference_shapley(X, percentile=95, tariff=LINEAR):
    """The definition: average marginal contribution over all M! join orders."""
    M = X.shape[1]
    phi = np.zeros(M)
    for order in itertools.permutations(range(M)):
        prev = 0.0
        for k in range(M):
            value = coalition_value(X, order[: k + 1], percentile, tariff)
            phi[order[k]] += value - prev
            prev = value
    return phi / math.factorial(M)


@st.composite
def games(draw, max_members=5, max_bins=30, directions=(1, 2)):
    D = draw(st.sampled_from(directions))
    M = draw(st.integers(1, max_members))
    B = draw(st.integers(1, max_bins))
    cell = st.one_of(st.just(0), st.integers(0, 40))
    return draw(arrays(np.int64, (D, M, B), elements=cell))


tariffs = st.one_of(
    st.just(LINEAR),
    st.builds(
        lambda base, k1, gap, s1, s2, unit: GameTariff(
            float(base), (float(k1), float(k1 + gap)), (float(s1), float(s2)), float(unit)
        ),
        st.integers(0, 50),
        st.integers(0, 60),
        st.integers(1, 60),
        st.integers(0, 5),
        st.integers(0, 5),
        st.sampled_from([0, 0, 7]),
    ),
)


def _close(a, b, scale=1.0):
    return np.allclose(a, b, rtol=1e-9, atol=1e-9 * max(1.0, scale))


# ---- exact enumeration against the definition, and the axioms


@SETTINGS
@given(games(), st.integers(1, 100), tariffs)
def test_exact_is_the_definition(X, p, tariff):
    got = shapley_exact(X, p, tariff)
    want = reference_shapley(X, p, tariff)
    assert _close(got.values, want, abs(want).max(initial=0))
    assert got.method == "exact" and not got.halfwidth.any()


@SETTINGS
@given(games(max_members=8, max_bins=40), st.sampled_from([50, 90, 95, 99]), tariffs)
def test_axioms_efficiency_null_symmetry_bounds(X, p, tariff):
    # add a null player and a twin of member 0
    X = np.concatenate([X, np.zeros_like(X[:, :1]), X[:, :1]], axis=1)
    M = X.shape[1]
    r = shapley_exact(X, p, tariff)
    grand = coalition_value(X, range(M), p, tariff) if X[:, :-2].any() or X.any() else 0.0
    active = np.flatnonzero(X.max(axis=(0, 2)) > 0)
    grand = coalition_value(X, active, p, tariff) if len(active) else 0.0
    assert _close(r.values.sum(), grand, grand)  # efficiency
    assert r.values[M - 2] == 0.0  # null player
    assert r.values[0] == r.values[M - 1]  # symmetry, to the bit
    peaks = X.max(axis=(0, 2))
    for i in range(M):  # 0 <= phi_i <= the member's peak rate at the steepest price
        assert -1e-9 <= r.values[i] <= tariff.bound(peaks[i]) + 1e-9 * max(1.0, grand)


@SETTINGS
@given(games(max_members=7, max_bins=30), st.integers(0, 6), st.integers(0, 2**31), tariffs)
def test_monotonicity(X, who, seed, tariff):
    who = who % X.shape[1]
    more = X.copy()
    extra = np.random.default_rng(seed).integers(0, 10, size=X[:, who].shape)
    more[:, who] += extra
    before = shapley_exact(X, 95, tariff).values[who]
    after = shapley_exact(more, 95, tariff).values[who]
    assert after >= before - 1e-9 * max(1.0, abs(before))


@SETTINGS
@given(games(max_members=7), st.integers(1, 1000))
def test_scale_invariance_of_the_linear_game(X, k):
    a = shapley_exact(X).values
    b = shapley_exact(X * k).values
    assert _close(b, k * a, k * abs(a).max(initial=0))


@SETTINGS
@given(games(max_members=8), st.randoms(use_true_random=False), tariffs)
def test_order_invariance(X, rnd, tariff):
    perm = list(range(X.shape[1]))
    rnd.shuffle(perm)
    a = shapley_exact(X, 95, tariff).values
    b = shapley_exact(X[:, perm], 95, tariff).values
    assert np.array_equal(a[perm], b)  # canonical member order: the same bits
    ma = shapley_monte_carlo(X, 95, tariff, fixed_pairs=64).values
    mb = shapley_monte_carlo(X[:, perm], 95, tariff, fixed_pairs=64).values
    assert np.array_equal(ma[perm], mb)


@SETTINGS
@given(games(max_members=6), st.integers(0, 60), st.integers(1, 5), st.integers(1, 5))
def test_additivity_over_tariffs(X, knot, s1, s2):
    """phi(g1 + g2) = phi(g1) + phi(g2): a linear price plus an overage above a commit."""
    g1 = GameTariff(0.0, (0.0,), (float(s1),))
    g2 = GameTariff(0.0, (float(knot),), (float(s2),))
    both = (
        GameTariff(0.0, (0.0, float(knot)), (float(s1), float(s1 + s2)))
        if knot > 0
        else GameTariff(0.0, (0.0,), (float(s1 + s2),))
    )
    a = shapley_exact(X, 95, g1).values + shapley_exact(X, 95, g2).values
    b = shapley_exact(X, 95, both).values
    assert _close(a, b, abs(b).max(initial=0))


# ---- oracles


def airport(rates, T=100):
    """Members active one after the other in disjoint windows of T // n bins each."""
    n = len(rates)
    X = np.zeros((n, T), np.int64)
    w = T // n
    for i, c in enumerate(rates):
        X[i, i * w : (i + 1) * w] = c
    return X


def airport_closed_form(rates):
    """v(S) = max c: phi_k = sum over j <= k of (c_j - c_(j-1)) / (n - j + 1), c sorted."""
    c = sorted(rates)
    n = len(c)
    phi, acc, prev = [], 0.0, 0
    for j, cj in enumerate(c):
        acc += (cj - prev) / (n - j)
        prev = cj
        phi.append(acc)
    return phi


def test_airport_game_oracle():
    X = airport((1, 3, 4, 7))
    want = [0.25, 0.9167, 1.4167, 4.4167]
    r = shapley_exact(X)
    assert np.allclose(r.values, want, atol=5e-5)
    assert np.allclose(r.values, airport_closed_form((1, 3, 4, 7)))
    mc = shapley_monte_carlo(X, seed=1)
    assert mc.converged
    assert np.all(np.abs(mc.values - r.values) <= mc.halfwidth * 4.5 / 1.96 + 1e-12)


@SETTINGS
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=10))
def test_airport_closed_form(rates):
    # each window (100 // n >= 10 bins) is longer than 5% of the 100 bins
    X = airport(rates)
    order = np.argsort(rates, kind="stable")
    want = np.empty(len(rates))
    want[order] = airport_closed_form(rates)
    assert np.allclose(shapley_exact(X).values, want, rtol=1e-9)


def test_two_bursts_share_equally():
    """Each bursts in its own 4 bins of 100: alone 95th = 0, together 10 -> 5 and 5."""
    X = np.zeros((2, 100), np.int64)
    X[0, 10:14] = 10
    X[1, 60:64] = 10
    assert percentile_value(X[0], 95) == 0 and percentile_value(X[1], 95) == 0
    assert percentile_value(X.sum(axis=0), 95) == 10
    assert list(shapley_exact(X).values) == [5.0, 5.0]
    assert list(shapley_monte_carlo(X).values) == [5.0, 5.0]  # every order gives (10, 0)/(0, 10)


def test_flat_contract_game_is_the_equal_split():
    flat, _ = ContractModel.from_mapping({"monthly_eur": 900})
    tariff = flat.game_tariff("contract", 300)
    X = np.random.default_rng(3).integers(0, 100, size=(1, 4, 50))
    assert np.allclose(shapley_exact(X, 95, tariff).values, 90000 / 4)


# ---- Monte Carlo


def random_game(rng, M, B=60, D=1):
    """Diverse members: steady, diurnal-like, bursty, and some silent."""
    X = np.zeros((D, M, B), np.int64)
    t = np.arange(B)
    for i in range(M):
        kind = rng.integers(0, 4)
        if kind == 0:
            X[:, i] = rng.integers(0, 30, size=(D, B))
        elif kind == 1:
            X[:, i] = 20 + 15 * np.sin(t / 6 + rng.random() * 6) + rng.integers(0, 10, (D, B))
        elif kind == 2:
            start = rng.integers(0, B - 5)
            X[:, i, start : start + rng.integers(1, 6)] = rng.integers(50, 200)
        else:
            X[:, i] = rng.integers(0, 4, size=(D, B)) * (rng.random((D, B)) < 0.3)
    return np.maximum(X, 0)


@STAT_SETTINGS
@given(
    st.integers(2, 12), st.integers(0, 2**32), st.sampled_from([1, 2]), st.sampled_from([90, 95])
)
def test_monte_carlo_agrees_with_exact(M, seed, D, p):
    rng = np.random.default_rng(seed)
    X = random_game(rng, M, D=D)
    assume(X.any())
    exact = shapley_exact(X, p).values
    mc = shapley_monte_carlo(X, p, seed=seed, fixed_pairs=400)
    # a 99.9993% interval (4.5 standard errors): 12 members x 25 examples cannot fail by luck
    assert np.all(np.abs(mc.values - exact) <= mc.halfwidth * 4.5 / 1.96 + 1e-9 * exact.sum())
    assert np.isclose(mc.values.sum(), mc.total)  # every join order adds up to v(N)


def test_intervals_cover_the_exact_value_95_percent_of_the_time():
    rng = np.random.default_rng(2010)
    X = random_game(rng, 12, B=80)
    exact = shapley_exact(X).values
    covered = total = 0
    for seed in range(200):
        mc = shapley_monte_carlo(X, seed=seed, fixed_pairs=300)
        live = mc.halfwidth > 0
        covered += int((np.abs(mc.values - exact) <= mc.halfwidth)[live].sum())
        total += int(live.sum())
    assert total >= 200 * 8
    assert 0.925 <= covered / total <= 0.975, covered / total


def test_monte_carlo_is_reproducible_and_thread_independent():
    X = random_game(np.random.default_rng(5), 30, B=120, D=2)
    a = shapley_monte_carlo(X, seed=42, fixed_pairs=300)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b = shapley_monte_carlo(X, seed=42, fixed_pairs=300)
    finally:
        numba.set_num_threads(threads)
    c = shapley_monte_carlo(X, seed=43, fixed_pairs=300)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.halfwidth, b.halfwidth)
    assert not np.array_equal(a.values, c.values)
    assert (a.seed, a.pairs, a.permutations) == (42, 300, 600)


def test_stopping_rule():
    X = random_game(np.random.default_rng(8), 25, B=100)
    r = shapley_monte_carlo(X, seed=7, tolerance=0.02, batch_pairs=64, min_pairs=64)
    assert r.converged and r.widest <= 0.02
    scale = np.maximum(r.values, r.total / r.players)
    assert np.max(r.halfwidth / scale) == pytest.approx(r.widest)
    assert r.pairs % 64 == 0
    assert "seed 7" in r.describe() and f"{r.pairs} antithetic pairs" in r.describe()
    capped = shapley_monte_carlo(X, seed=7, tolerance=1e-6, max_pairs=128, batch_pairs=64)
    assert not capped.converged and capped.pairs == 128
    assert "NOT converged" in capped.describe()


def test_large_counts_are_quantised_for_the_monte_carlo_run():
    X = random_game(np.random.default_rng(9), 8, B=50).astype(np.int64) * (2**36)
    exact = shapley_exact(X).values
    mc = shapley_monte_carlo(X, seed=1, fixed_pairs=400)
    assert any("divided by" in note for note in mc.notes)
    assert np.all(np.abs(mc.values - exact) <= mc.halfwidth * 4.5 / 1.96 + 1e-6 * exact.sum())


def test_max_direction_rule_uses_the_larger_direction_per_coalition():
    # member 0 only downloads, member 1 only uploads: v(S) = max of the two 95ths
    X = np.zeros((2, 2, 20), np.int64)
    X[0, 0] = 10
    X[1, 1] = 4
    assert np.allclose(shapley_exact(X).values, [8.0, 2.0])  # (10 + (10-4))/2, (4 + 0)/2


# ---- kernels


@SETTINGS
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=300), st.integers(0, 10**6))
def test_kth_largest_with_ties(xs, k):
    a = np.array(xs, dtype=np.int64)
    k = 1 + k % len(a)
    assert _kth_largest(a.copy(), len(a), k) == np.sort(a)[::-1][k - 1]


@SETTINGS
@given(tariffs, st.integers(0, 500))
def test_tariff_kernel_matches_python(tariff, x):
    knots, slopes, unit = tariff.arrays()
    assert _tariff(float(x), tariff.base, knots, slopes, unit) == pytest.approx(tariff.value(x))
    assert tariff.value(x + 1) >= tariff.value(x)  # non-decreasing


def test_defaults_agree_with_the_sharing_policy():
    from accounting import shapley
    from accounting.sharing import DEFAULT_SEED, SharingPolicy

    policy = SharingPolicy()
    assert shapley.DEFAULT_SEED == DEFAULT_SEED == policy.seed
    assert shapley.DEFAULT_TOLERANCE == policy.tolerance == 0.005
    assert shapley.DEFAULT_EXACT_MAX == policy.exact_max_members == 20


@SETTINGS
@given(games(max_members=8, max_bins=40), st.integers(1, 100), st.integers(0, 2**63), tariffs)
def test_monte_carlo_marginals_of_one_pair_are_exact(X, p, seed, tariff):
    """One antithetic pair: the kernel's incremental 95ths give the exact marginals."""
    from accounting.shapley import _join_order, _players

    got = shapley_monte_carlo(X, p, tariff, seed=seed, fixed_pairs=1, batch_pairs=1)
    players, _ = _players(X)
    if len(players) == 0:
        assert not got.values.any()
        return
    perm = np.empty(len(players), np.int64)
    _join_order(np.uint64(seed), 0, perm)
    want = np.zeros(X.shape[1])
    for order in (players[perm], players[perm][::-1]):
        prev = 0.0
        for k in range(len(order)):
            value = coalition_value(X, order[: k + 1], p, tariff)
            want[order[k]] += 0.5 * (value - prev)
            prev = value
    # members with identical traffic get the mean of their values
    for i in range(X.shape[1]):
        twins = [j for j in range(X.shape[1]) if np.array_equal(X[:, i], X[:, j])]
        if len(twins) > 1:
            want[twins] = want[twins].mean()
    assert _close(got.values, want, abs(want).max(initial=0))
