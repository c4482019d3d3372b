"""The billing percentile, by our own definition (not a library quantile that may change).

Nearest rank: with n samples sorted ascending, the p-th percentile is the sample of rank
r = ceil(p * n / 100) (1-based), computed in integers as (p * n + 99) // 100; equivalently
the m-th largest with m = n - r + 1 (``top_rank``). Samples are per-bin byte counts (the
rate of a bin is bytes * 8 / bin_seconds); n is the number of bins taken into account (the
caller decides whether bins without data are excluded or count as zero). Ties between equal
samples are broken by bin index (a stable sort), so "the bin that sets the percentile" is
well defined: among equal values, the earlier bin ranks lower.
"""

from __future__ import annotations

import numpy as np


def nearest_rank(n: int, percentile: int) -> int:
    """1-based rank of the p-th percentile among n samples (0 when n is 0)."""
    if n < 0 or not 1 <= percentile <= 100:
        raise ValueError("need n >= 0 and 1 <= percentile <= 100")
    return (percentile * n + 99) // 100


def percentile_value(samples: np.ndarray, percentile: int):
    """The nearest-rank percentile of a 1-D array (0 for an empty one)."""
    n = len(samples)
    if n == 0:
        return samples.dtype.type(0)
    r = nearest_rank(n, percentile)
    return np.partition(samples, r - 1)[r - 1]


def percentile_rows(matrix: np.ndarray, percentile: int) -> np.ndarray:
    """Nearest-rank percentile of each row of a 2-D array (samples along axis 1)."""
    rows, n = matrix.shape
    if n == 0:
        return np.zeros(rows, dtype=matrix.dtype)
    r = nearest_rank(n, percentile)
    return np.partition(matrix, r - 1, axis=1)[:, r - 1]


def percentile_bin(samples: np.ndarray, percentile: int) -> int:
    """Index of a sample holding the percentile value (the bin that sets it); -1 if empty."""
    n = len(samples)
    if n == 0:
        return -1
    r = nearest_rank(n, percentile)
    order = np.argsort(samples, kind="stable")
    return int(order[r - 1])


def top_rank(n: int, percentile: int) -> int:
    """m such that the nearest-rank percentile of n samples is their m-th largest (0 if n=0)."""
    return n - nearest_rank(n, percentile) + 1 if n else 0


def percentile_band(samples: np.ndarray, percentile: int, band: int = 0) -> np.ndarray:
    """Indices of the samples ranked r - band .. r + band (ascending, stable), clipped to 1..n.

    With band 0 it is ``[percentile_bin(samples, percentile)]``; empty for no samples.
    """
    n = len(samples)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if band < 0:
        raise ValueError("band must be >= 0")
    r = nearest_rank(n, percentile)
    order = np.argsort(samples, kind="stable")
    return order[max(0, r - 1 - band) : min(n, r + band)].astype(np.int64)
