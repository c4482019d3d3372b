"""numba kernel: the elements a fixed layout's records carry, read in one compiled pass.

numpy reads a big-endian field of a packed record array with a strided ``astype`` (a few ns
per field per record, and one pass over the records per field); this reads every wanted
field of a record before the next record, into native uint64 rows, from the sets where
the records lie (a joined record array is one set). Loaded lazily by
collector.decode.flowsets (the collector's import rule: numba only on first decode).
"""

from __future__ import annotations

import numpy as np

from collector._jit import kernel


@kernel
def _extract_sets(buffer, set_starts, per_set, size, offsets, lengths, out):
    """Row by row, straight from the datagram buffer: the records of set s are
    ``per_set[s]`` records of ``size`` bytes from ``set_starts[s]``. Positions are
    unsigned so that numba leaves out its negative-index checks (25 against 33 ns per
    record of 11 fields, measured), with a branch per common field length."""
    k_count = offsets.shape[0]
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    i = 0
    for s in range(set_starts.shape[0]):
        base = set_starts[s]
        for r in range(per_set[s]):
            at = np.uint64(base + r * size)
            for k in range(k_count):
                p = at + np.uint64(offsets[k])
                length = lengths[k]
                if length == 4:
                    value = (
                        (np.uint64(buffer[p]) << np.uint64(24))
                        | (np.uint64(buffer[p + one]) << np.uint64(16))
                        | (np.uint64(buffer[p + two]) << np.uint64(8))
                        | np.uint64(buffer[p + three])
                    )
                elif length == 2:
                    value = (np.uint64(buffer[p]) << np.uint64(8)) | np.uint64(buffer[p + one])
                elif length == 1:
                    value = np.uint64(buffer[p])
                else:
                    value = np.uint64(0)
                    for j in range(length):
                        value = (value << np.uint64(8)) | np.uint64(buffer[p + np.uint64(j)])
                out[k, i] = value
            i += 1


def extract_sets(
    buffer: np.ndarray,
    set_starts: np.ndarray,
    per_set: np.ndarray,
    size: int,
    offsets: np.ndarray,
    lengths: np.ndarray,
) -> np.ndarray:
    """uint64[len(offsets), records]: the fields of fixed-size records read in place from
    the sets that hold them (no copy of the records first)."""
    n = int(per_set.sum())
    out = np.empty((len(offsets), n), np.uint64)
    if n and len(offsets):
        _extract_sets(
            buffer,
            set_starts.astype(np.int64),
            per_set.astype(np.int64),
            np.int64(size),
            offsets,
            lengths,
            out,
        )
    return out
