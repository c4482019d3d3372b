"""Flow records left where they lie in the receive buffer, described for in-place accounting.

The decoder normally turns records into FlowBatch columns. For the layouts the collector
sees most (NetFlow v5; v9/IPFIX templates of IPv4 addresses, counts, absolute or
sysUpTime times and no per-record sampling) it can instead hand over a
:class:`RecordSets`: where the records are, where each wanted field lies in a record, and
what each set's records need from outside it (export time, uptime, sampling rate,
exporter). accounting/attribution_inplace.py reads them in one compiled pass; what it
cannot take it turns back into a FlowBatch with :meth:`RecordSets.materialize`, which
runs the decoder's own mapping on those records only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from collector.batch import FlowBatch
from collector.decode import fields as ie
from collector.decode.templates import Template

# Rows of a layout: (offset in the record, length in bytes; 0 = not exported, read as 0).
SOURCE, DESTINATION, OCTETS, PACKETS, START, END, INGRESS, EGRESS = range(8)
# How START/END are read: sysUpTime milliseconds against the set's uptime and export
# time (32-bit, wrap-safe), or absolute unix milliseconds (64-bit).
TIMES_UPTIME = 0
TIMES_ABSOLUTE_MS = 1

V5_LAYOUT = np.array(
    [[0, 4], [4, 4], [20, 4], [16, 4], [24, 4], [28, 4], [12, 2], [14, 2]], np.int64
)


@dataclass(frozen=True)
class RecordSets:
    """Fixed-length flow records of one layout, set by set (a v5 datagram is one set)."""

    buffer: np.ndarray  # uint8: the batch's buffer (valid until the buffer is reused)
    set_starts: np.ndarray  # int64[s]: first record of each set
    per_set: np.ndarray  # int64[s]: records in each set
    record_length: int
    layout: np.ndarray  # int64[8, 2]: (offset, length) per row above
    times: int  # TIMES_UPTIME or TIMES_ABSOLUTE_MS
    export_ms: np.ndarray  # int64[s]
    uptime: np.ndarray  # int64[s]: sysUpTime at export (TIMES_UPTIME), else zeros
    rate: np.ndarray  # uint32[s]: sampling rate (0 = unknown)
    exporter_index: np.ndarray  # int32[s]
    end_before_start_note: str  # the note the decoder gives such records
    rate_unknown_note: str | None  # the note the decoder gives records of rate 0
    # (set indices, record offsets, notes) -> FlowBatch of those records, decoded the
    # usual way (notes included)
    materialize: Callable[[np.ndarray, np.ndarray, Counter], FlowBatch]

    def __len__(self) -> int:
        return int(self.per_set.sum())

    @property
    def is_v5(self) -> bool:
        """NetFlow v5's layout (accounting has a kernel with it compiled in)."""
        return (
            self.record_length == 48
            and self.times == TIMES_UPTIME
            and bool(np.array_equal(self.layout, V5_LAYOUT))
        )

    def to_flow_batch(self, notes: Counter) -> FlowBatch:
        """Every record, the usual way."""
        sets = np.repeat(np.arange(len(self.per_set)), self.per_set)
        before = np.cumsum(self.per_set) - self.per_set  # records of the earlier sets
        within = np.arange(len(sets)) - before[sets]
        return self.materialize(sets, self.set_starts[sets] + self.record_length * within, notes)


PER_RECORD_SAMPLING = (
    ie.SAMPLING_INTERVAL,
    ie.SAMPLING_PACKET_INTERVAL,
    ie.SAMPLER_ID,
    ie.SELECTOR_ID,
)


def template_layout(t: Template, version: int) -> tuple[np.ndarray, int] | None:
    """The layout and time mode of a template the in-place pass can read, else None.

    Taken: fixed-length flow templates with both IPv4 addresses (4 bytes) and no IPv6
    one, octetDeltaCount and packetDeltaCount, times as flowStart/EndMilliseconds
    (8 bytes) or, for v9, flowStart/EndSysUpTime (4 bytes), and no per-record sampling
    element. Anything else keeps the general mapping (collector/decode/flowsets.py).
    """
    if t.is_options or t.variable or t.record_length <= 0:
        return None
    L = t.lengths
    if L.get(ie.SOURCE_IPV4_ADDRESS) != 4 or L.get(ie.DESTINATION_IPV4_ADDRESS) != 4:
        return None
    if ie.SOURCE_IPV6_ADDRESS in L or ie.DESTINATION_IPV6_ADDRESS in L:
        return None
    if ie.OCTET_DELTA_COUNT not in L or ie.PACKET_DELTA_COUNT not in L:
        return None
    if any(e in L for e in PER_RECORD_SAMPLING):
        return None
    if L.get(ie.FLOW_START_MILLISECONDS) == 8 and L.get(ie.FLOW_END_MILLISECONDS) == 8:
        times, start, end = TIMES_ABSOLUTE_MS, ie.FLOW_START_MILLISECONDS, ie.FLOW_END_MILLISECONDS
    elif (
        version == 9
        and L.get(ie.FLOW_START_SYS_UP_TIME) == 4
        and L.get(ie.FLOW_END_SYS_UP_TIME) == 4
        and not _earlier_time_element(L)
    ):
        times, start, end = TIMES_UPTIME, ie.FLOW_START_SYS_UP_TIME, ie.FLOW_END_SYS_UP_TIME
    else:
        return None
    fields = t.dtype.fields
    layout = np.zeros((8, 2), np.int64)
    for row, element in (
        (SOURCE, ie.SOURCE_IPV4_ADDRESS),
        (DESTINATION, ie.DESTINATION_IPV4_ADDRESS),
        (OCTETS, ie.OCTET_DELTA_COUNT),
        (PACKETS, ie.PACKET_DELTA_COUNT),
        (START, start),
        (END, end),
        (INGRESS, ie.INGRESS_INTERFACE),
        (EGRESS, ie.EGRESS_INTERFACE),
    ):
        length = L.get(element, 0)
        if length > (4 if row in (INGRESS, EGRESS) else 8):
            return None  # the general mapping truncates such interfaces to 32 bits
        if length:
            layout[row] = (fields[f"e{element}"][1], length)
    return layout, times


def _earlier_time_element(L: dict[int, int]) -> bool:
    """Time elements the general mapping prefers to sysUpTime (it takes the first present
    of ms, µs, ns, s, delta µs, sysUpTime per end)."""
    return any(
        e in L
        for e in (
            ie.FLOW_START_MILLISECONDS,
            ie.FLOW_END_MILLISECONDS,
            ie.FLOW_START_MICROSECONDS,
            ie.FLOW_END_MICROSECONDS,
            ie.FLOW_START_NANOSECONDS,
            ie.FLOW_END_NANOSECONDS,
            ie.FLOW_START_SECONDS,
            ie.FLOW_END_SECONDS,
            ie.FLOW_START_DELTA_MICROSECONDS,
            ie.FLOW_END_DELTA_MICROSECONDS,
        )
    )
