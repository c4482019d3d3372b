"""The numba walker for templates with variable-length fields (RFC 7011 §7).

**Exception to the collector's import rule**: ``collector`` imports only the standard
library and numpy at module load, so that ``egress --help`` never pays numba's cost.
This module imports numba, and :mod:`collector.decode.flowsets` imports it lazily, only
when a data set of a variable-length template is met. Fixed-length templates (nearly
all router exports) never load it.

A variable-length field starts with one length byte; 255 means the next two bytes hold
the length. Records cannot be found without reading every field's length, hence a
compiled loop. The walker copies the fixed-length elements the decoder reads into a
packed fixed layout (the template's *projection*), so the rest of the data path is the
same as for fixed-length templates. A record cut by the end of its set ends the set:
the bytes left are padding (RFC 7011 §3.3.1) and are not counted as records.
"""

from __future__ import annotations

import numpy as np

from collector._jit import kernel


@kernel
def _walk(buf, starts, ends, field_lengths, projection, width, max_records):
    out = np.zeros((max_records, width), np.uint8)
    rec_set = np.empty(max_records, np.int64)
    per_set = np.zeros(len(starts), np.int64)
    n = 0
    nf = len(field_lengths)
    for s in range(len(starts)):
        p = starts[s]
        e = ends[s]
        while n < max_records and p < e:
            q = p
            ok = True
            for f in range(nf):
                length = field_lengths[f]
                if length < 0:
                    if q >= e:
                        ok = False
                        break
                    length = np.int64(buf[q])
                    q += 1
                    if length == 255:
                        if q + 2 > e:
                            ok = False
                            break
                        length = (np.int64(buf[q]) << 8) | np.int64(buf[q + 1])
                        q += 2
                if q + length > e:
                    ok = False
                    break
                d = projection[f]
                if d >= 0:
                    for k in range(length):
                        out[n, d + k] = buf[q + k]
                q += length
            if not ok or q == p:
                break
            rec_set[n] = s
            per_set[s] += 1
            n += 1
            p = q
    return out[:n], rec_set[:n], per_set


def walk(buffer, starts, ends, field_lengths, projection, width, max_records):
    """(records as uint8[n, width], set index of each record, records per set)."""
    return _walk(
        buffer,
        np.ascontiguousarray(starts, np.int64),
        np.ascontiguousarray(ends, np.int64),
        np.ascontiguousarray(field_lengths, np.int64),
        np.ascontiguousarray(projection, np.int64),
        np.int64(max(width, 1)),
        np.int64(max_records),
    )
