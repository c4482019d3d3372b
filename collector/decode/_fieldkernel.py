"""numba kernel: the elements a fixed layout's records carry, read in one compiled pass.

numpy reads a big-endian field of a packed record array with a strided ``astype`` (a few ns
per field per record, and one pass over the records per field); this reads every wanted
field of a record while the record is in cache, into native uint64 rows. Loaded lazily by
collector.decode.flowsets (the collector's import rule: numba only on first decode).
"""

from __future__ import annotations

import numpy as np

from collector._jit import kernel


@kernel
def _extract(raw, n, size, offsets, lengths, out):
    k_count = offsets.shape[0]
    for i in range(n):
        base = i * size
        for k in range(k_count):
            at = base + offsets[k]
            value = np.uint64(0)
            for j in range(lengths[k]):
                value = (value << np.uint64(8)) | np.uint64(raw[at + j])
            out[k, i] = value


def extract(raw: np.ndarray, n: int, size: int, offsets: np.ndarray, lengths: np.ndarray):
    """uint64[len(offsets), n]: big-endian unsigned values of each (offset, length <= 8)."""
    out = np.empty((len(offsets), n), np.uint64)
    if n and len(offsets):
        _extract(raw, np.int64(n), np.int64(size), offsets, lengths, out)
    return out
