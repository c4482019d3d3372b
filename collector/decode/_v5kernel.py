"""numba kernel: NetFlow v5 record bytes to native FlowBatch columns in one pass.

numpy's astype over big-endian fields strided by 48 bytes costs ~5 ns per field per record
(67 ns per record for the columns we need, measured); reading the bytes once in a compiled
loop costs ~9 ns per record. Loaded lazily by netflow5.to_flow_batch.
"""

from __future__ import annotations

import numpy as np

from collector._jit import kernel


@kernel
def _be32(r, at):
    return (
        (np.int64(r[at]) << 24)
        | (np.int64(r[at + 1]) << 16)
        | (np.int64(r[at + 2]) << 8)
        | np.int64(r[at + 3])
    )


@kernel
def _signed_age(uptime, stamp):
    """sysUpTime difference as a signed 32-bit number of milliseconds (wrap-safe)."""
    age = (uptime - stamp) & 0xFFFFFFFF
    if age >= 0x80000000:
        age -= 0x100000000
    return age


@kernel
def convert_v5(
    raw,
    datagram_of_record,
    export_ms,
    uptime,
    rate,
    exporter,
    src,
    dst,
    octets,
    packets,
    start,
    end,
    ingress,
    egress,
    sampling,
    exporter_out,
):
    """Fill the output columns from raw (n, 48) record bytes; returns the inverted count.

    A record whose end precedes its start keeps its counts with start := end.
    """
    inverted = 0
    for i in range(raw.shape[0]):
        r = raw[i]
        d = datagram_of_record[i]
        src[i] = _be32(r, 0)
        dst[i] = _be32(r, 4)
        ingress[i] = (np.int64(r[12]) << 8) | np.int64(r[13])
        egress[i] = (np.int64(r[14]) << 8) | np.int64(r[15])
        packets[i] = _be32(r, 16)
        octets[i] = _be32(r, 20)
        up = uptime[d]
        s = export_ms[d] - _signed_age(up, _be32(r, 24))
        e = export_ms[d] - _signed_age(up, _be32(r, 28))
        if e < s:
            s = e
            inverted += 1
        start[i] = s
        end[i] = e
        sampling[i] = rate[d]
        exporter_out[i] = exporter[d]
    return inverted
