"""Shapley value of the 95th-percentile cost game: exact for small N, Monte Carlo above.

The game
--------
Players are members; member i's traffic is a row of per-bin byte counts, one matrix per
direction the contract looks at, stacked as ``X: int64[D, M, B]`` (D = 1 for the ``in``,
``out`` and ``sum`` direction rules, where ``sum`` means in + out per bin; D = 2 for ``max``,
with X[0] = in and X[1] = out). A coalition S has, in each direction d, the per-bin sum
s_d(t) = sum over i in S of X[d, i, t], and its billed value is

    P(S) = max over d of P95(s_d)        (nearest rank: the r-th smallest, r = ceil(p n / 100))
    v(S) = g(P(S)) if S has any traffic,  v(S) = 0 otherwise (no traffic, no contract needed)

where g is a ``GameTariff``: ``base + sum_k slope_k * overlap(P, [knot_k, knot_k+1))`` over
byte-per-bin knots, optionally with the amount above the first knot rounded up to ``unit``.
With the default ``LINEAR`` tariff (base 0, one slope 1 from 0) v(S) is simply the billed
95th in bytes per bin (the pricing of Stanojevic, Laoutaris and Rodriguez, IMC 2010); the
contract module builds the tariffs of an actual contract.

The Shapley value phi_i is the average over the n! join orders of i's marginal contribution
v(S u {i}) - v(S), where S is the set of members before i. It is efficient (the phi sum to
v(N)), symmetric, gives 0 to a member without traffic (null player), is additive over games,
and, g being non-decreasing, 0 <= phi_i <= ``tariff.bound(peak_i)`` (the member's peak rate at
the steepest price, plus the base for the member that comes first).

Exact computation (``shapley_exact``)
-------------------------------------
v is evaluated on all 2^N coalitions in Gray-code order, so that consecutive coalitions
differ by one member: the per-bin sum is updated by one row and the new 95th is selected
among the bins whose sum can still hold it (it moves by at most that member's peak). The
2^N range is cut into chunks run in parallel. Then phi_i = sum over S not containing i of
|S|! (N-|S|-1)! / N! * (v(S u i) - v(S)), accumulated per coalition size. Memory: 8 * 2^N
bytes (8 MiB for N = 20).

Monte Carlo (``shapley_monte_carlo``)
-------------------------------------
Random join orders, each drawn with its reverse (antithetic pair: a member early in one is
late in the other, so the two marginals are negatively correlated). Order number k of a run
is a pure function of (seed, k), so the result does not depend on the thread count. A join
order adds members one by one to a running per-bin sum and re-selects the 95th after each
add; bins are stored sorted by the full coalition's sum, descending, so that a bin whose full
sum is below the current 95th (it can never reach it again: sums only grow) drops out of the
scan. With the ``max`` rule, a direction only needs its exact 95th when it could exceed the
coalition's billed value P so far, so its bins drop out below max(its 95th, P), and it
stops being updated once P reaches its grand-coalition 95th. Each pair gives one sample per member (the mean of its two
marginals; the marginals of one order add up to v(N), so the estimates do too); the 95%
interval is estimate +- 1.96 standard errors, and the run stops at the first batch where
the widest interval, relative to the member's estimate (or to the mean share v(N)/N when
that is larger, so that members with almost no share cannot hold the run hostage), is
within ``tolerance`` (0.5% by default). The seed and the number of pairs are reported.

Members identical in every bin and direction get the mean of their estimates (their true
values are equal by symmetry), so identical members are always charged alike.

Both methods take the members with traffic in a canonical order (by a digest of their
traffic), so that the result, down to the float rounding and the random join orders, does
not depend on the order in which members are given. For the Monte Carlo run the counts are
stored as int32 (half the memory traffic); counts above 2^31 - 1 bytes per bin (57 Mb/s
over 300 s) are first divided by the smallest integer that makes them fit, which the result
states in its notes.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
from numba import prange

from accounting._jit import kernel, parallel_kernel
from accounting.contract import GameTariff
from accounting.percentile import nearest_rank, top_rank

Z_95 = 1.959963984540054
DEFAULT_TOLERANCE = 0.005
DEFAULT_SEED = 20100901
DEFAULT_EXACT_MAX = 20
EXACT_HARD_MAX = 26  # 2^26 coalition values = 512 MiB


LINEAR = GameTariff()  # v(S) = the billed 95th of S, bytes per bin


@dataclass(frozen=True, slots=True, eq=False)
class ShapleyResult:
    """Shapley values (game units, one per member row) and how they were obtained."""

    values: np.ndarray  # float64[M]
    halfwidth: np.ndarray  # float64[M], 95% interval half-width (zeros when exact)
    method: str  # "exact" or "monte-carlo"
    total: float  # v(N): the values sum to it (exactly up to float rounding when exact)
    players: int  # members with traffic (the others are null players, value 0)
    seed: int | None = None
    pairs: int = 0  # antithetic pairs of join orders (2 * pairs orders)
    converged: bool = True
    tolerance: float = 0.0
    widest: float = 0.0  # widest half-width relative to max(value, mean share)
    confidence: float = 0.95
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def permutations(self) -> int:
        return 2 * self.pairs

    def describe(self) -> str:
        if self.method == "exact":
            return f"Shapley exact over 2^{self.players} coalitions"
        state = "converged" if self.converged else "NOT converged (sample cap reached)"
        return (
            f"Shapley Monte Carlo: {self.pairs} antithetic pairs ({self.permutations} join "
            f"orders), seed {self.seed}, widest 95% interval +-{100 * self.widest:.3f}% of the "
            f"share (target {100 * self.tolerance:.3f}%), {state}"
        )


# --------------------------------------------------------------------------------------
# kernels


@kernel
def _tariff(x, base, knots, slopes, unit):
    n = knots.shape[0]
    if n == 0:
        return base
    over = x - knots[0]
    if over <= 0.0:
        return base
    if unit > 0.0:
        over = math.ceil(over / unit) * unit
    y = knots[0] + over
    v = base
    for k in range(n):
        lo = knots[k]
        if y <= lo:
            break
        hi = knots[k + 1] if k + 1 < n else y
        v += slopes[k] * (min(y, hi) - lo)
    return v


@kernel
def _kth_largest(a, n, k):
    """The k-th largest (1-based) of a[0:n]; reorders a[0:n].

    Quickselect with a median-of-three pivot and branch-free partitions (greater than the
    pivot first, then equal to it, so that ties cannot stall it); insertion sort below 25.
    """
    lo = 0
    hi = n - 1
    target = k - 1
    while hi - lo > 24:
        mid = (lo + hi) >> 1
        x = a[lo]
        y = a[mid]
        z = a[hi]
        if x < y:
            if y < z:
                piv = y
            elif x < z:
                piv = z
            else:
                piv = x
        elif x < z:
            piv = x
        elif y < z:
            piv = z
        else:
            piv = y
        store = lo
        for i in range(lo, hi + 1):
            v = a[i]
            a[i] = a[store]
            a[store] = v
            store += v > piv
        if target < store:
            hi = store - 1
            continue
        equal = store
        for i in range(store, hi + 1):
            v = a[i]
            a[i] = a[equal]
            a[equal] = v
            equal += v == piv
        if target < equal:
            return piv
        lo = equal
    for i in range(lo + 1, hi + 1):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] < v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
    return a[target]


@kernel
def _add_and_select(s, row, length, sign, lo, hi, m, cand):
    """s[:length] += sign * row[:length]; return the m-th largest of s[:length], or -1
    when fewer than m bins end >= lo (the percentile is then below lo).

    The caller guarantees that fewer than m bins end > hi, so only the bins in [lo, hi]
    are candidates for the selection. Two passes: the add with the counts (vectorised),
    then the collection of the candidates, which stops at the last one (bins sorted by the
    grand coalition's sum put almost all of them near the front).
    """
    window = 0
    above = 0
    if sign > 0:
        for t in range(length):
            v = s[t] + row[t]
            s[t] = v
            window += (v >= lo) & (v <= hi)
            above += v > hi
    else:
        for t in range(length):
            v = s[t] - row[t]
            s[t] = v
            window += (v >= lo) & (v <= hi)
            above += v > hi
    if window + above < m:
        return -1
    c = 0
    t = 0
    while c < window:  # branch-free compaction
        v = s[t]
        cand[c] = v
        c += (v >= lo) & (v <= hi)
        t += 1
    return _kth_largest(cand, c, m - above)


@kernel
def _splitmix(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return state, z


@kernel
def _join_order(seed, number, perm):
    """Join order ``number`` of the run ``seed``: a Fisher-Yates shuffle of perm (in place)."""
    n = perm.shape[0]
    for i in range(n):
        perm[i] = i
    state, z = _splitmix(seed ^ (np.uint64(number) * np.uint64(0xD1B54A32D192ED03)))
    state = state ^ z
    for i in range(n - 1, 0, -1):
        state, z = _splitmix(state)
        u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        j = np.int64(u * (i + 1))
        if j > i:
            j = i
        tmp = perm[i]
        perm[i] = perm[j]
        perm[j] = tmp


@parallel_kernel
def _mc_pairs(X, agg_sorted, peaks, full, m, quantum, base, knots, slopes, unit, seed, first, out):
    """Antithetic pairs first .. first + len(out) - 1 of the run ``seed``.

    X: int[D, M, B], the bins of each direction sorted by the grand coalition's sum,
    descending (agg_sorted[d]); full[d]: the grand coalition's 95th in direction d; values
    are multiples of ``quantum`` bytes. out[j, i]: the mean of member i's two marginals in
    pair j (forward order, then the same order reversed).
    """
    D, M, B = X.shape
    npairs = out.shape[0]
    for j in prange(npairs):
        perm = np.empty(M, np.int64)
        _join_order(seed, first + j, perm)
        s = np.zeros((D, B), np.int64)
        cand = np.empty(B, np.int64)
        p = np.zeros(D, np.int64)
        length = np.empty(D, np.int64)
        alive = np.empty(D, np.bool_)
        for k in range(M):
            out[j, k] = 0.0
        for direction in range(2):
            s[:, :] = 0
            p[:] = 0
            length[:] = B
            alive[:] = True
            prev = 0.0
            best = np.int64(0)  # the billed value P of the coalition so far
            for k in range(M):
                i = perm[k] if direction == 0 else perm[M - 1 - k]
                new_best = best
                for d in range(D):
                    peak = peaks[d, i]
                    if alive[d] and peak > 0:
                        # only a value above the current P matters: below it, the
                        # direction's own 95th need not be known exactly (-1 -> 0)
                        lo = p[d] if p[d] > best else best
                        q = _add_and_select(s[d], X[d, i], length[d], 1, lo, lo + peak, m, cand)
                        p[d] = q if q > 0 else 0
                    if p[d] > new_best:
                        new_best = p[d]
                best = new_best
                for d in range(D):
                    if not alive[d]:
                        continue
                    if full[d] <= best:
                        # the grand coalition's 95th in d is reached: d cannot raise P
                        alive[d] = False
                        continue
                    # a bin whose grand-coalition sum is below both the direction's 95th
                    # and P can neither hold the 95th nor make it exceed P any more
                    threshold = p[d] if p[d] > best else best
                    n_active = length[d]
                    while n_active > m and agg_sorted[d, n_active - 1] < threshold:
                        n_active -= 1
                    length[d] = n_active
                val = _tariff(np.float64(best) * quantum, base, knots, slopes, unit)
                out[j, i] += 0.5 * (val - prev)
                prev = val


@kernel
def _select_fresh(s, m, cand):
    n = s.shape[0]
    for t in range(n):
        cand[t] = s[t]
    return _kth_largest(cand, n, m)


@parallel_kernel
def _exact_values(X, peaks, m, base, knots, slopes, unit, chunks, out_v):
    """out_v[S] = v(S) for every coalition S (bit i = member i), Gray-code order per chunk."""
    D, M, B = X.shape
    total = np.int64(1) << M
    size = total // chunks
    for c in prange(chunks):
        start = c * size
        s = np.zeros((D, B), np.int64)
        cand = np.empty(B, np.int64)
        p = np.zeros(D, np.int64)
        gray = start ^ (start >> 1)
        best = np.int64(0)
        for d in range(D):
            for i in range(M):
                if (gray >> i) & 1:
                    for t in range(B):
                        s[d, t] += X[d, i, t]
            p[d] = _select_fresh(s[d], m, cand)
            if p[d] > best:
                best = p[d]
        out_v[gray] = _tariff(np.float64(best), base, knots, slopes, unit) if gray else 0.0
        for k in range(start + 1, start + size):
            bit = 0
            while not (k >> bit) & 1:
                bit += 1
            gray = k ^ (k >> 1)
            adding = (gray >> bit) & 1
            best = np.int64(0)
            for d in range(D):
                peak = peaks[d, bit]
                if peak > 0:
                    if adding:
                        p[d] = _add_and_select(s[d], X[d, bit], B, 1, p[d], p[d] + peak, m, cand)
                    else:
                        p[d] = _add_and_select(s[d], X[d, bit], B, -1, p[d] - peak, p[d], m, cand)
                if p[d] > best:
                    best = p[d]
            out_v[gray] = _tariff(np.float64(best), base, knots, slopes, unit) if gray else 0.0


@parallel_kernel
def _exact_phi(v, M, out):
    """phi_i from all coalition values, summed per coalition size then weighted."""
    total = np.int64(1) << M
    # weight of a coalition of size s not containing i: s! (M-s-1)! / M! = 1 / (M * C(M-1, s))
    weights = np.empty(M, np.float64)
    binom = 1.0
    for size in range(M):
        weights[size] = 1.0 / (M * binom)
        binom = binom * (M - 1 - size) / (size + 1)
    for i in prange(M):
        bit = np.int64(1) << i
        acc = np.zeros(M, np.float64)
        for S in range(total):
            if S & bit:
                continue
            size = 0
            x = S
            while x:
                x &= x - 1
                size += 1
            acc[size] += v[S | bit] - v[S]
        phi = 0.0
        for size in range(M):
            phi += acc[size] * weights[size]
        out[i] = phi


# --------------------------------------------------------------------------------------
# wrappers


def _check_game(X: np.ndarray, percentile: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3:
        raise ValueError("X must be int64[D, members, bins] (or [members, bins])")
    if X.dtype != np.int64:
        X = X.astype(np.int64)
    if X.size and X.min() < 0:
        raise ValueError("byte counts must be >= 0")
    if not 1 <= percentile <= 100:
        raise ValueError("percentile must be in 1..100")
    return X


def coalition_value(X: np.ndarray, members, percentile: int, tariff: GameTariff = LINEAR) -> float:
    """v(S) by the definition (sorting; for tests and reports)."""
    X = _check_game(X, percentile)
    members = list(members)
    if not members or X.shape[2] == 0 or not X[:, members, :].any():
        return 0.0
    sums = X[:, members, :].sum(axis=1)
    r = nearest_rank(X.shape[2], percentile)
    billed = max(int(np.sort(row)[r - 1]) for row in sums)
    return tariff.value(billed)


def _active(X: np.ndarray) -> np.ndarray:
    return np.flatnonzero(X.max(axis=(0, 2)) > 0) if X.size else np.zeros(0, np.int64)


def _digests(X: np.ndarray) -> list[bytes]:
    """A digest of each member's traffic (all directions and bins)."""
    return [
        hashlib.blake2b(np.ascontiguousarray(X[:, i, :]).tobytes(), digest_size=16).digest()
        for i in range(X.shape[1])
    ]


def _players(X: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """The members with traffic in a canonical order (by the digest of their traffic), so
    that the computation, down to the float rounding and the random join orders, does not
    depend on the order in which the members are given."""
    digests = _digests(X)
    active = sorted(_active(X).tolist(), key=lambda i: (digests[i], i))
    return np.asarray(active, dtype=np.int64), digests


def shapley_exact(
    X: np.ndarray, percentile: int = 95, tariff: GameTariff = LINEAR
) -> ShapleyResult:
    """Exact Shapley values by enumerating the 2^N coalitions of the members with traffic."""
    started = time.perf_counter()
    X = _check_game(X, percentile)
    _, M, B = X.shape
    values = np.zeros(M)
    active, digests = _players(X)
    n = len(active)
    if n > EXACT_HARD_MAX:
        raise ValueError(f"{n} members with traffic: too many for exact enumeration")
    if n and B:
        sub, _ = _columns_by_total(X, active, np.int64)
        peaks = sub.max(axis=2)
        knots, slopes, unit = tariff.arrays()
        v = np.empty(1 << n, np.float64)
        chunks = 1 << max(0, min(n - 1, 6))
        m = top_rank(B, percentile)
        _exact_values(sub, peaks, m, tariff.base, knots, slopes, unit, chunks, v)
        phi = np.empty(n)
        _exact_phi(v, n, phi)
        values[active] = phi
        total = float(v[-1])
    else:
        total = 0.0
    return ShapleyResult(
        values=_symmetrise(X, values, digests),
        halfwidth=np.zeros(M),
        method="exact",
        total=total,
        players=n,
        seconds=time.perf_counter() - started,
    )


def _columns_by_total(X: np.ndarray, rows: np.ndarray, dtype, quantum: int = 1):
    """X[:, rows, :] with each direction's bins sorted by the rows' total, descending,
    divided by ``quantum`` (rounded to nearest) and stored as ``dtype``; plus the sorted
    totals (of the stored values)."""
    D = X.shape[0]
    B = X.shape[2]
    out = np.empty((D, len(rows), B), dtype)
    totals = np.empty((D, B), np.int64)
    for d in range(D):
        order = np.argsort(-X[d, rows, :].sum(axis=0), kind="stable")
        for a in range(0, len(rows), 64):
            chunk = X[d, rows[a : a + 64], :][:, order]
            if quantum > 1:
                chunk = (chunk + quantum // 2) // quantum
            out[d, a : a + 64] = chunk
        totals[d] = out[d].sum(axis=0, dtype=np.int64)
    return out, totals


def shapley_monte_carlo(
    X: np.ndarray,
    percentile: int = 95,
    tariff: GameTariff = LINEAR,
    *,
    seed: int = DEFAULT_SEED,
    tolerance: float = DEFAULT_TOLERANCE,
    min_pairs: int = 256,
    max_pairs: int = 100_000,
    batch_pairs: int = 256,
    fixed_pairs: int | None = None,
) -> ShapleyResult:
    """Monte Carlo Shapley values over antithetic pairs of random join orders.

    Stops at the first batch of ``batch_pairs`` pairs, once ``min_pairs`` are done, where
    the widest 95% interval is within ``tolerance`` of the share (see the module
    docstring), or at ``max_pairs`` (then reported as not converged). ``fixed_pairs`` runs
    exactly that many pairs, without stopping rule (for coverage studies).

    The per-bin counts are stored as int32 for the run (half the memory traffic): when a
    count exceeds 2^31 - 1 bytes (57 Mb/s over 300 s) all counts are divided by the
    smallest ``quantum`` that makes them fit, rounded to nearest (a relative error below
    1e-9 of the largest count, reported in ``notes``).
    """
    started = time.perf_counter()
    X = _check_game(X, percentile)
    D, M, B = X.shape
    if not 0 < tolerance < 1:
        raise ValueError("tolerance must be in (0, 1)")
    if not 0 <= seed < 2**64:
        raise ValueError("seed must be in [0, 2^64)")
    active, digests = _players(X)
    n = len(active)
    values = np.zeros(M)
    halfwidth = np.zeros(M)
    if n == 0 or B == 0:
        return ShapleyResult(values, halfwidth, "monte-carlo", 0.0, n, seed, 0, True, tolerance)
    m = top_rank(B, percentile)
    total = coalition_value(X, active, percentile, tariff)
    largest = int(X.max())
    quantum = max(1, -(-largest // (2**31 - 1)))
    game, agg_sorted = _columns_by_total(X, active, np.int32, quantum)
    peaks = game.max(axis=2).astype(np.int64)
    full = np.array([np.sort(agg_sorted[d])[B - m] for d in range(D)], dtype=np.int64)
    knots, slopes, unit = tariff.arrays()
    sums = np.zeros(n)
    sumsq = np.zeros(n)
    mean_share = total / n
    target = fixed_pairs if fixed_pairs is not None else max(max_pairs, 2)
    done = 0
    converged = fixed_pairs is not None
    widest = math.inf
    est = np.zeros(n)
    half = np.zeros(n)
    while done < target:
        size = min(max(1, batch_pairs), target - done)
        vals = np.empty((size, n))
        _mc_pairs(
            game,
            agg_sorted,
            peaks,
            full,
            m,
            float(quantum),
            tariff.base,
            knots,
            slopes,
            unit,
            np.uint64(seed),
            done,
            vals,
        )
        sums += vals.sum(axis=0)
        sumsq += (vals * vals).sum(axis=0)
        done += size
        est = sums / done
        var = np.maximum(sumsq / done - est * est, 0.0) * done / max(done - 1, 1)
        half = Z_95 * np.sqrt(var / done)
        widest = float(np.max(half / np.maximum(np.abs(est), mean_share))) if total > 0 else 0.0
        if fixed_pairs is None and done >= min_pairs and widest <= tolerance:
            converged = True
            break
    values[active] = est
    halfwidth[active] = half
    notes = []
    if quantum > 1:
        notes.append(f"per-bin counts divided by {quantum} bytes for the Monte Carlo run")
    return ShapleyResult(
        values=_symmetrise(X, values, digests),
        halfwidth=_symmetrise(X, halfwidth, digests),
        method="monte-carlo",
        total=total,
        players=n,
        seed=seed,
        pairs=done,
        converged=converged,
        tolerance=tolerance,
        widest=widest,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )


def _symmetrise(X: np.ndarray, values: np.ndarray, digests: list[bytes]) -> np.ndarray:
    """Give members with identical traffic (every direction and bin) the mean of their values."""
    groups: dict[bytes, list[int]] = {}
    for i, digest in enumerate(digests):
        groups.setdefault(digest, []).append(i)
    out = values.copy()
    for members in groups.values():
        if len(members) > 1:
            first = X[:, members[0], :]
            same = [i for i in members if np.array_equal(X[:, i, :], first)]
            if len(same) > 1:
                out[same] = values[same].mean()
    return out
