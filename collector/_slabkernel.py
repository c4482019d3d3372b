"""numba kernel: pack datagrams received into fixed-size slots back to back.

recvmmsg fills one 16 KiB slot per datagram; the journal and the decoders want the
payloads contiguous. Packing them with one compiled loop costs a memcpy; doing it in
Python (a join of slices) cost ~1 µs per datagram. Loaded lazily by collector/listen.py.
"""

from __future__ import annotations

import numpy as np

from collector._jit import kernel


@kernel
def pack_slots(slab, slot_bytes, lengths, out):
    """Copy slot i's first lengths[i] bytes to ``out`` in order; returns the offsets."""
    offsets = np.empty(lengths.shape[0], np.int64)
    at = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        src = i * slot_bytes
        out[at : at + n] = slab[src : src + n]
        offsets[i] = at
        at += n
    return offsets
