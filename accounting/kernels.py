"""Numba kernels of the hot path: prefix lookup, flow classification, binning.

Private and unforgiving: they trust their inputs (dtypes, shapes, ranges). The validating
wrappers live in attribution.py. Every kernel has a slow reference in tests/reference.py
and is compared with it on generated flows.

Conventions shared with attribution.py:
- owner rows: 0..M-1 are members, M is ``internal``, M+1 is ``unattributed``;
- directions: 0 = in (towards the member), 1 = out (from the member), 2 = none/unknown;
- the usage cube is int64[rows, bins, 3 directions, 3 metrics (bytes, packets, flows)].
"""

from __future__ import annotations

import numpy as np

from accounting._jit import kernel

DIR_IN = 0
DIR_OUT = 1
DIR_NONE = 2
METRIC_BYTES = 0
METRIC_PACKETS = 1
METRIC_FLOWS = 2

_V4_MAPPED_LO = np.uint64(0xFFFF_0000_0000)


@kernel
def lookup_v4(root, chunks, address):
    """Value of the longest prefix covering a uint32 address, or -1."""
    v = root[address >> 16]
    if v < 0:
        v = chunks[-v - 1, (address >> 8) & 0xFF]
        if v < 0:
            v = chunks[-v - 1, address & 0xFF]
    return v - 1


@kernel
def lookup_v6(root, chunks, hi, lo):
    """Value of the longest prefix covering a (hi, lo) 128-bit address, or -1."""
    v = root[hi >> np.uint64(48)]
    shift = 40
    while v < 0:
        if shift >= 0:
            byte = (hi >> np.uint64(shift)) & np.uint64(0xFF)
        else:
            byte = (lo >> np.uint64(shift + 64)) & np.uint64(0xFF)
        v = chunks[-v - 1, byte]
        shift -= 8
    return v - 1


@kernel
def _lookup_any(version, a4, a6, i, v4root, v4chunks, v6root, v6chunks):
    if version == 4:
        return lookup_v4(v4root, v4chunks, a4[i])
    hi = a6[i, 0]
    lo = a6[i, 1]
    if hi == 0 and (lo >> np.uint64(32)) == np.uint64(0xFFFF):
        return lookup_v4(v4root, v4chunks, np.uint32(lo & np.uint64(0xFFFFFFFF)))
    return lookup_v6(v6root, v6chunks, hi, lo)


@kernel
def classify(
    ip_version,
    src4,
    dst4,
    src6,
    dst6,
    v4root,
    v4chunks,
    v6root,
    v6chunks,
    n_members,
    owner_out,
    direction_out,
):
    """Owner row and direction of each flow, from the members of its two ends."""
    internal = n_members
    unattributed = n_members + 1
    for i in range(ip_version.shape[0]):
        version = ip_version[i]
        s = _lookup_any(version, src4, src6, i, v4root, v4chunks, v6root, v6chunks)
        d = _lookup_any(version, dst4, dst6, i, v4root, v4chunks, v6root, v6chunks)
        if s >= 0 and d >= 0:
            owner_out[i] = internal
            direction_out[i] = DIR_NONE
        elif s >= 0:
            owner_out[i] = s
            direction_out[i] = DIR_OUT
        elif d >= 0:
            owner_out[i] = d
            direction_out[i] = DIR_IN
        else:
            owner_out[i] = unattributed
            direction_out[i] = DIR_NONE


@kernel
def _share(total, part, whole):
    """floor(total * part / whole) without overflow for total < 2**63, part <= whole < 2**31."""
    q = total // whole
    r = total - q * whole
    return q * part + (r * part) // whole


@kernel
def spread(owner, direction, octets, packets, start_ms, end_ms, bin_ms, bin0, cube):
    """Add each flow's bytes and packets to the bins it spans, pro rata of its duration.

    A flow covers [start, end) in milliseconds; the part that falls before a bin boundary
    t is floor(count * (t - start) / duration), so the parts are integers that sum to the
    count exactly. A zero-duration flow lands whole in its start bin. The flow itself is
    counted once, in its start bin.
    """
    for i in range(owner.shape[0]):
        o = owner[i]
        d = direction[i]
        s = start_ms[i]
        e = end_ms[i]
        b_first = s // bin_ms
        b_last = e // bin_ms
        nbytes = octets[i]
        npkts = packets[i]
        cube[o, b_first - bin0, d, METRIC_FLOWS] += 1
        duration = e - s
        if b_first == b_last or duration <= 0:
            cube[o, b_first - bin0, d, METRIC_BYTES] += nbytes
            cube[o, b_first - bin0, d, METRIC_PACKETS] += npkts
            continue
        done_bytes = 0
        done_pkts = 0
        for b in range(b_first, b_last + 1):
            boundary = (b + 1) * bin_ms
            if boundary > e:
                boundary = e
            elapsed = boundary - s
            cum_bytes = _share(nbytes, elapsed, duration)
            cum_pkts = _share(npkts, elapsed, duration)
            cube[o, b - bin0, d, METRIC_BYTES] += cum_bytes - done_bytes
            cube[o, b - bin0, d, METRIC_PACKETS] += cum_pkts - done_pkts
            done_bytes = cum_bytes
            done_pkts = cum_pkts
