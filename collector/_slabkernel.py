"""numba kernel: pack datagrams received into fixed-size slots back to back.

recvmmsg fills a head slot (and, for a long datagram, a tail slot) per datagram; the
journal and the decoders want the payloads contiguous. Packing them with one compiled loop costs a memcpy; doing it in
Python (a join of slices) cost ~1 µs per datagram. Loaded lazily by collector/listen.py.
"""

from __future__ import annotations

import numpy as np

from collector._jit import kernel


@kernel
def pack_slots(heads, head_bytes, tails, tail_bytes, slots, lengths, out):
    """Copy datagram i (slot ``slots[i]``, ``lengths[i]`` bytes: its head slot, then the
    rest from its tail slot) to ``out``, back to back; returns the offsets."""
    offsets = np.empty(lengths.shape[0], np.int64)
    at = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        k = slots[i]
        first = min(n, head_bytes)
        out[at : at + first] = heads[k * head_bytes : k * head_bytes + first]
        if n > head_bytes:
            rest = n - head_bytes
            out[at + first : at + n] = tails[k * tail_bytes : k * tail_bytes + rest]
        offsets[i] = at
        at += n
    return offsets
