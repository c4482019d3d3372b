"""From a FlowBatch to usage rows: who, which bin, which direction, how much.

The validating wrapper around the kernels: it normalises dtypes, applies sampling,
bounds flow spans, picks a dense bin window for the usage cube (splitting the batch when
its flows are spread over too long a time), and turns the cube back into sparse rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from accounting import kernels
from accounting.members import MemberTable
from accounting.usage import UsageRows
from collector.batch import FlowBatch

# A flow lasting longer than this is a clock anomaly (routers time flows out after
# minutes); its start is moved to end - MAX_FLOW_SPAN_MS, keeping every byte, and noted.
MAX_FLOW_SPAN_MS = 86_400_000
# Cells of the dense cube per window (rows x bins x 3 x 3 int64): bounds its memory.
MAX_CUBE_CELLS = 1 << 24
INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class Attributed:
    """Per-flow attribution (kept separate from binning so both can be tested alone)."""

    owner: np.ndarray  # int32
    direction: np.ndarray  # int8


def classify_flows(flows: FlowBatch, table: MemberTable) -> Attributed:
    """Owner row and direction of every flow (longest-prefix match on both ends)."""
    n = len(flows)
    owner = np.empty(n, np.int32)
    direction = np.empty(n, np.int8)
    if n:
        v6 = flows if flows.has_ipv6 else None
        src6 = v6.source_ipv6_address if v6 else np.zeros((n, 2), np.uint64)
        dst6 = v6.destination_ipv6_address if v6 else np.zeros((n, 2), np.uint64)
        if v6 is None and (flows.ip_version != 4).any():
            raise ValueError("FlowBatch has IPv6 rows but no IPv6 address columns")
        kernels.classify(
            flows.ip_version,
            flows.source_ipv4_address,
            flows.destination_ipv4_address,
            src6,
            dst6,
            table.trie.v4.root,
            table.trie.v4.chunks,
            table.trie.v6.root,
            table.trie.v6.chunks,
            np.int32(table.size),
            owner,
            direction,
        )
    return Attributed(owner, direction)


def scaled_counts(
    flows: FlowBatch, notes: Counter, unknown_rate: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Octets and packets multiplied by each flow's sampling rate, as int64.

    A rate of 0 means unknown; it is replaced by ``unknown_rate`` and noted.
    """
    rate = flows.sampling_interval.astype(np.int64)
    unknown = rate == 0
    if unknown.any():
        notes["sampling_rate_unknown"] += int(unknown.sum())
        rate = np.where(unknown, np.int64(unknown_rate), rate)
    octets = flows.octet_delta_count
    packets = flows.packet_delta_count
    limit = (INT64_MAX // np.maximum(rate, 1)).astype(np.uint64)
    overflow = (octets > limit) | (packets > limit)
    if overflow.any():
        # Counts this large are corrupt records; saturating keeps the row visible.
        notes["count_overflow_saturated"] += int(overflow.sum())
        octets = np.minimum(octets, limit)
        packets = np.minimum(packets, limit)
    return octets.astype(np.int64) * rate, packets.astype(np.int64) * rate


def bounded_times(flows: FlowBatch, notes: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Start and end times with spans capped at MAX_FLOW_SPAN_MS (noted when applied)."""
    start = flows.flow_start_milliseconds
    end = flows.flow_end_milliseconds
    too_long = (end - start) > MAX_FLOW_SPAN_MS
    if too_long.any():
        notes["flow_span_clamped"] += int(too_long.sum())
        start = np.where(too_long, end - MAX_FLOW_SPAN_MS, start)
    return start, end


def bin_usage(
    attributed: Attributed,
    octets: np.ndarray,
    packets: np.ndarray,
    start_ms: np.ndarray,
    end_ms: np.ndarray,
    *,
    n_rows: int,
    bin_ms: int,
) -> UsageRows:
    """Spread flows over their bins and sum them per (bin, owner row, direction)."""
    n = len(octets)
    if n == 0:
        return UsageRows.empty()
    first_bin = start_ms // bin_ms
    last_bin = end_ms // bin_ms
    span_bins = MAX_FLOW_SPAN_MS // bin_ms + 2
    window = max(MAX_CUBE_CELLS // (n_rows * 3 * 3), 2 * span_bins)
    lo, hi = int(first_bin.min()), int(last_bin.max())
    if hi - lo + 1 <= window:
        groups = [np.arange(n)]
    else:
        groups = _time_groups(first_bin, span_bins, window)
    parts = []
    for idx in groups:
        sub_lo = int(first_bin[idx].min())
        sub_hi = int(last_bin[idx].max())
        cube = np.zeros((n_rows, sub_hi - sub_lo + 1, 3, 3), dtype=np.int64)
        kernels.spread(
            attributed.owner[idx],
            attributed.direction[idx],
            octets[idx],
            packets[idx],
            start_ms[idx],
            end_ms[idx],
            np.int64(bin_ms),
            np.int64(sub_lo),
            cube,
        )
        parts.append(_cube_to_rows(cube, sub_lo, bin_ms))
    return parts[0] if len(parts) == 1 else UsageRows.combine(parts)


def _time_groups(first_bin: np.ndarray, span_bins: int, window: int) -> list[np.ndarray]:
    """Split flows by start bin into groups whose bin range fits a window of ``window`` bins.

    Every flow spans at most ``span_bins`` bins, so flows starting within the same stride of
    ``window - span_bins`` bins end inside the window.
    """
    stride = window - span_bins
    order = np.argsort(first_bin, kind="stable")
    key = (first_bin[order] - first_bin[order[0]]) // stride
    cuts = np.flatnonzero(np.diff(key)) + 1
    return np.split(order, cuts)


def _cube_to_rows(cube: np.ndarray, bin0: int, bin_ms: int) -> UsageRows:
    touched = cube.any(axis=3)
    owner, rel_bin, direction = np.nonzero(touched)
    values = cube[owner, rel_bin, direction]
    return UsageRows(
        (rel_bin.astype(np.int64) + bin0) * bin_ms,
        owner.astype(np.int32),
        direction.astype(np.int8),
        np.ascontiguousarray(values[:, kernels.METRIC_BYTES]),
        np.ascontiguousarray(values[:, kernels.METRIC_PACKETS]),
        np.ascontiguousarray(values[:, kernels.METRIC_FLOWS]),
    )


def attribute(flows: FlowBatch, table: MemberTable, *, bin_ms: int, notes: Counter) -> UsageRows:
    """The whole per-batch accounting step: classify, scale by sampling, bin, sum."""
    attributed = classify_flows(flows, table)
    octets, packets = scaled_counts(flows, notes)
    start, end = bounded_times(flows, notes)
    return bin_usage(attributed, octets, packets, start, end, n_rows=table.size + 2, bin_ms=bin_ms)
