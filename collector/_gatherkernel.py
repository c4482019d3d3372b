"""numba kernel: the fixed-size header of each datagram, copied into one array.

Decoders read their message headers as a structured array. numpy built it with a fancy
index of n x 24 (v5) or n x 16/20 (IPFIX/v9) positions: ~0.15 µs per datagram, more than
reading the 30 records behind the header. Loaded lazily by collector/datagrams.py.
"""

from __future__ import annotations

from collector._jit import kernel


@kernel
def gather_rows(buffer, starts, out):
    """out[i, :] = buffer[starts[i] : starts[i] + out.shape[1]] (bounds trusted)."""
    width = out.shape[1]
    for i in range(starts.shape[0]):
        src = buffer[starts[i] : starts[i] + width]
        row = out[i]
        for k in range(width):
            row[k] = src[k]
