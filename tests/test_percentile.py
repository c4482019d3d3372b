"""The billing percentile: nearest rank in integers, the golden vector, bin counts, missing bins."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounting.bins import billing_month
from accounting.percentile import (
    nearest_rank,
    percentile_band,
    percentile_bin,
    percentile_rows,
    percentile_value,
    top_rank,
)
from accounting.sharing import Semantics, billed, prepare_usage

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The foundation issue's golden vector: 20 five-minute bins, in Mb/s.
GOLDEN_IN = ".139 .653 .201 .116 .084 .032 .047 .185 .198 .203 .276 .370 .971 .233 .218 .182 .169 .126 .131 .157"
GOLDEN_OUT = "1.347 1.435 1.229 .523 .438 .231 .347 .689 .940 1.248 1.385 1.427 3.988 1.265 1.221 1.013 .992 .874 .896 1.002"


def _bytes_per_bin(mbps_text: str, bin_seconds: int = 300) -> np.ndarray:
    """Exact byte counts of rates given in Mb/s with three decimals."""
    return np.array(
        [int(Fraction(v) * 1_000_000 * bin_seconds / 8) for v in mbps_text.split()], np.int64
    )


samples = st.lists(st.integers(0, 50), min_size=0, max_size=120).map(
    lambda xs: np.array(xs, dtype=np.int64)
)


def test_golden_vector_in_and_out():
    inbound, outbound = _bytes_per_bin(GOLDEN_IN), _bytes_per_bin(GOLDEN_OUT)
    assert len(inbound) == len(outbound) == 20
    assert nearest_rank(20, 95) == 19
    assert percentile_value(inbound, 95) == _bytes_per_bin(".653")[0]
    assert percentile_value(outbound, 95) == _bytes_per_bin("1.435")[0]
    assert percentile_bin(inbound, 95) == 1
    assert percentile_bin(outbound, 95) == 1
    # through the billing semantics: max(P95 in, P95 out) = out, 1.435 Mb/s
    usage = prepare_usage(["m"], inbound[None], outbound[None], Semantics(direction="max"))
    b = billed(usage)
    assert (b.direction, b.bin) == ("out", 1)
    assert b.mbps(300) == Fraction("1.435")
    assert billed(
        prepare_usage(["m"], inbound[None], outbound[None], Semantics(direction="in"))
    ).mbps(300) == Fraction("0.653")


def test_nearest_rank_is_the_ceiling_formula():
    for n in range(0, 2000):
        for p in (1, 5, 50, 90, 95, 99, 100):
            assert nearest_rank(n, p) == math.ceil(Fraction(p * n, 100))
    assert nearest_rank(8928, 95) == 8482
    assert top_rank(8928, 95) == 447
    with pytest.raises(ValueError):
        nearest_rank(10, 0)


@SETTINGS
@given(samples, st.integers(1, 100))
def test_percentile_value_is_the_rth_smallest(xs, p):
    if len(xs) == 0:
        assert percentile_value(xs, p) == 0
        assert percentile_bin(xs, p) == -1
        return
    r = nearest_rank(len(xs), p)
    assert percentile_value(xs, p) == np.sort(xs)[r - 1]
    assert xs[percentile_bin(xs, p)] == np.sort(xs)[r - 1]
    # the m-th largest is the same sample
    assert np.sort(xs)[::-1][top_rank(len(xs), p) - 1] == np.sort(xs)[r - 1]


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 100), st.integers(0, 2**31))
def test_percentile_rows_matches_each_row(rows, n, p, seed):
    m = np.random.default_rng(seed).integers(0, 9, size=(rows, n))
    assert list(percentile_rows(m, p)) == [percentile_value(row, p) for row in m]


@SETTINGS
@given(samples, st.integers(1, 100), st.integers(0, 10))
def test_band_is_the_ranks_around_r(xs, p, band):
    got = percentile_band(xs, p, band)
    if len(xs) == 0:
        assert len(got) == 0
        return
    r = nearest_rank(len(xs), p)
    order = sorted(range(len(xs)), key=lambda i: (xs[i], i))  # stable: ties by bin index
    assert list(got) == order[max(0, r - 1 - band) : min(len(xs), r + band)]
    assert percentile_band(xs, p, 0)[0] == percentile_bin(xs, p)


@pytest.mark.parametrize(
    ("month", "bins"),
    [("2026-03", 8916), ("2026-10", 8940), ("2026-01", 8928), ("2026-02", 8064)],
)
def test_month_bin_counts_in_paris(month, bins):
    bm = billing_month(month, "Europe/Paris", 300)
    assert bm.bin_count == bins
    n = bm.bin_count
    assert nearest_rank(n, 95) == (95 * n + 99) // 100


def test_dst_month_through_usage():
    """A DST month counts its real number of bins when missing bins count as zero."""
    bm = billing_month("2026-10", "Europe/Paris", 300)
    given_cols = np.arange(0, bm.bin_count, 2)  # data in every other bin
    x = np.full((1, len(given_cols)), 1000, np.int64)
    zero = prepare_usage(
        ["a"],
        x,
        x,
        Semantics(missing="zero"),
        bin_numbers=given_cols,
        bins_in_month=bm.bin_count,
    )
    assert zero.bins == 8940 and zero.bins_missing == 4470
    excl = prepare_usage(
        ["a"], x, x, Semantics(), bin_numbers=given_cols, bins_in_month=bm.bin_count
    )
    assert excl.bins == 4470 and excl.bins_missing == 4470
    # half the month at 1000, half zero: the 95th is 1000 either way
    assert billed(zero).bytes == 1000 and billed(excl).bytes == 1000


@SETTINGS
@given(
    st.integers(1, 4),
    st.integers(1, 40),
    st.integers(0, 20),
    st.integers(1, 100),
    st.integers(0, 2**31),
)
def test_missing_bins_excluded_or_zero(members, given_bins, extra, p, seed):
    rng = np.random.default_rng(seed)
    inbound = rng.integers(0, 20, size=(members, given_bins))
    outbound = rng.integers(0, 20, size=(members, given_bins))
    present = rng.random(given_bins) < 0.8
    total = given_bins + extra
    cols = rng.permutation(total)[:given_bins]
    args = dict(bin_numbers=cols, bins_in_month=total, present=present)
    ex = prepare_usage(
        [f"m{i}" for i in range(members)],
        inbound,
        outbound,
        Semantics(percentile=p, direction="in"),
        **args,
    )
    zo = prepare_usage(
        [f"m{i}" for i in range(members)],
        inbound,
        outbound,
        Semantics(percentile=p, direction="in", missing="zero"),
        **args,
    )
    missing = total - int(present.sum())
    assert ex.bins_missing == zo.bins_missing == missing
    assert ex.bins == int(present.sum())
    assert zo.bins == total
    agg = inbound.sum(axis=0)
    assert billed(ex).bytes == percentile_value(agg[present], p)
    padded = np.concatenate([agg, np.zeros(extra, np.int64)])
    assert billed(zo).bytes == percentile_value(padded, p)
    assert sorted(zo.columns.tolist()) == list(range(total))
