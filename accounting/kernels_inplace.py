"""numba kernel: flow records, read in the receive buffer, straight into the usage cube.

The general path writes every record into FlowBatch columns, scales them, then attributes
them: ~70 bytes per flow written and read back three times. A batch of 4,096 datagrams
(~120,000 flows, ~8 MB of columns) does not fit in L2, so each pass streams through
memory and evicts the prefix tries and the cube the lookups need. This kernel reads each
record once, through the layout the decoder gives (collector/decode/inplace.py: NetFlow
v5, and v9/IPFIX templates of IPv4 flows), and writes only to the cube, for the common
case the ``attribute_simple`` kernel serves (one epoch, no interface or VLAN rule).

It does exactly what the decoder's mapping + ``prepare`` + ``attribute_simple`` +
``count_in_bins`` do for the records it takes: the same inlined rules, in the same order,
with bins computed once per flow (a flow inside its export time's bin needs two
comparisons, no division; measured on the live v5 stream: 49 against 44 ns per flow).
A record whose bins fall outside the cube it is given is left for the general path
(its set and offset go to ``spill_set``/``spill_offset``) and changes nothing here, not
even a note.
"""

from __future__ import annotations

import numpy as np

from accounting._jit import inline_kernel, kernel
from accounting.kernels import (
    INT64_MAX,
    _apply_uplinks,
    _owner_and_direction,
    _spread_segment,
    floor_bin,
    lookup_v4,
)
from accounting.usage import METRIC_BYTES, METRIC_FLOWS, METRIC_PACKETS
from collector.decode._v5kernel import _signed_age

# Layout rows and time modes: collector/decode/inplace.py.
_SOURCE, _DESTINATION, _OCTETS, _PACKETS, _START, _END, _INGRESS, _EGRESS = range(8)
_TIMES_UPTIME = 0


@inline_kernel
def _field4(buffer, p):
    return (
        (np.uint64(buffer[p]) << np.uint64(24))
        | (np.uint64(buffer[p + np.uint64(1)]) << np.uint64(16))
        | (np.uint64(buffer[p + np.uint64(2)]) << np.uint64(8))
        | np.uint64(buffer[p + np.uint64(3)])
    )


@inline_kernel
def _field(buffer, at, layout, row):
    """The unsigned big-endian field ``row`` of the record at ``at`` (0 if not exported)."""
    p = at + np.uint64(layout[row, 0])
    length = layout[row, 1]
    if length == 4:
        return _field4(buffer, p)
    if length == 8:
        return (_field4(buffer, p) << np.uint64(32)) | _field4(buffer, p + np.uint64(4))
    if length == 2:
        return (np.uint64(buffer[p]) << np.uint64(8)) | np.uint64(buffer[p + np.uint64(1)])
    value = np.uint64(0)
    for k in range(length):
        value = (value << np.uint64(8)) | np.uint64(buffer[p + np.uint64(k)])
    return value


@kernel
def attribute_records(
    buffer,
    set_starts,
    per_set,
    record_length,
    layout,
    times,
    export_ms,
    uptime,
    rate,
    exporter,
    v4roots,
    v4chunks,
    n_members,
    up_ifs,
    up_count,
    unknown_rate,
    max_span,
    bin_ms,
    bin0,
    cube,
    flow_counts,
    spill_set,
    spill_offset,
):
    """Attribute every record of every set into ``cube`` (planes from bin ``bin0``)
    and count flows per (start bin - bin0, exporter) in ``flow_counts``.

    Returns (spilled, inverted, unknown rates, saturated, clamped, first start ms,
    last end ms); the notes and the time range cover only the records attributed here.
    """
    inv = 1.0 / bin_ms
    planes = cube.shape[0]
    uplinks_on = up_count.max() > 0
    spilled = 0
    inverted = 0
    unknown = 0
    saturated = 0
    clamped = 0
    lo = INT64_MAX
    hi = -INT64_MAX
    uptime_times = times == _TIMES_UPTIME
    for d in range(set_starts.shape[0]):
        up = uptime[d]
        base_ms = export_ms[d]
        r = np.int64(rate[d])
        rate_unknown = r == 0
        if rate_unknown:
            r = unknown_rate
        big_rate = r >= 0x80000000
        e_idx = exporter[d]
        # Most flows lie in the bin of their export time: two comparisons, no division.
        here = floor_bin(base_ms, bin_ms, inv)
        here_from = here * bin_ms
        here_to = here_from + bin_ms
        here -= bin0
        for j in range(per_set[d]):
            at = np.uint64(set_starts[d] + record_length * j)
            s = np.int64(_field(buffer, at, layout, _START))
            e = np.int64(_field(buffer, at, layout, _END))
            if uptime_times:
                s = base_ms - _signed_age(up, s)
                e = base_ms - _signed_age(up, e)
            flipped = e < s
            if flipped:
                s = e
            if here_from <= s and e < here_to:
                first_bin = here
                last_bin = here
            else:
                first_bin = floor_bin(s, bin_ms, inv) - bin0
                last_bin = floor_bin(e, bin_ms, inv) - bin0
            if first_bin < 0 or last_bin >= planes:
                spill_set[spilled] = d
                spill_offset[spilled] = np.int64(at)
                spilled += 1
                continue
            inverted += flipped
            unknown += rate_unknown
            if s < lo:
                lo = s
            if e > hi:
                hi = e
            flow_counts[np.uint64(first_bin), np.uint64(e_idx)] += 1
            o = _field(buffer, at, layout, _OCTETS)
            p = _field(buffer, at, layout, _PACKETS)
            if big_rate or ((o | p) >> np.uint64(32)) != 0:  # else no product overflows
                limit = np.uint64(INT64_MAX // r)
                if o > limit or p > limit:
                    saturated += 1
                    o = min(o, limit)
                    p = min(p, limit)
            bin_from = first_bin
            if e - s > max_span:
                s = e - max_span
                clamped += 1
                bin_from = floor_bin(s, bin_ms, inv) - bin0
            owner, direction = _owner_and_direction(
                lookup_v4(v4roots, 0, v4chunks, np.int64(_field(buffer, at, layout, _SOURCE))),
                lookup_v4(v4roots, 0, v4chunks, np.int64(_field(buffer, at, layout, _DESTINATION))),
                n_members,
            )
            if uplinks_on and up_count[e_idx] > 0:
                owner, direction = _apply_uplinks(
                    owner,
                    direction,
                    n_members,
                    e_idx,
                    _field(buffer, at, layout, _INGRESS),
                    _field(buffer, at, layout, _EGRESS),
                    up_ifs,
                    up_count,
                )
            ob = np.int64(o) * r
            pb = np.int64(p) * r
            ux = np.uint64(bin_from)
            uo = np.uint64(owner)
            ud = np.uint64(direction)
            cube[ux, uo, ud, METRIC_FLOWS] += 1  # unsigned indices: no negative-index code
            if bin_from == last_bin or e - s <= 0:  # one bin: what _spread_one does
                cube[ux, uo, ud, METRIC_BYTES] += ob
                cube[ux, uo, ud, METRIC_PACKETS] += pb
            else:
                _spread_segment(
                    cube,
                    owner,
                    direction,
                    ob,
                    pb,
                    s,
                    e,
                    bin_ms,
                    bin0,
                    bin_from + bin0,
                    last_bin + bin0,
                    0,
                    0,
                )
    return spilled, inverted, unknown, saturated, clamped, lo, hi
