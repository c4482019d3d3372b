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
from accounting.exporters import UplinkTable
from accounting.members import MemberTable
from accounting.usage import UsageAccumulator, UsageRows
from collector.batch import FlowBatch

# A flow lasting longer than this is a clock anomaly (routers time flows out after
# minutes); its start is moved to end - MAX_FLOW_SPAN_MS, keeping every byte, and noted.
MAX_FLOW_SPAN_MS = 86_400_000
# Cells of the dense cube per window (rows x bins x 3 x 3 int64): bounds its memory.
MAX_CUBE_CELLS = 1 << 24


@dataclass(frozen=True, slots=True)
class Attributed:
    """Per-flow attribution (kept separate from binning so both can be tested alone)."""

    owner: np.ndarray  # int32
    direction: np.ndarray  # int8


def classify_flows(
    flows: FlowBatch, table: MemberTable, exporters: np.ndarray | None = None
) -> Attributed:
    """Owner row and direction of every flow, by the rules of the epoch it starts in.

    ``exporters`` (the batch's exporter addresses) lets interface and VLAN rules apply.
    """
    n = len(flows)
    owner = np.empty(n, np.int32)
    direction = np.empty(n, np.int8)
    if n:
        src6, dst6 = _ipv6_columns(flows)
        kernels.classify(
            _v4only(flows),
            flows.ip_version,
            flows.source_ipv4_address,
            flows.destination_ipv4_address,
            src6,
            dst6,
            flows.flow_start_milliseconds,
            flows.exporter_index,
            flows.ingress_interface,
            flows.egress_interface,
            _vlan(flows),
            _slots(table, flows, exporters),
            table.epoch_start_ms,
            _rules(table),
            np.int64(table.size),
            owner,
            direction,
        )
    return Attributed(owner, direction)


def _rules(table: MemberTable) -> tuple:
    """The table's arrays in the order the kernels unpack them."""
    return (
        table.v4_roots,
        table.v4_chunks,
        table.v6_roots,
        table.v6_chunks,
        table.port_keys,
        table.port_rows,
        table.vlan_keys,
        table.vlan_rows,
    )


def _slots(table: MemberTable, flows: FlowBatch, exporters: np.ndarray | None) -> np.ndarray:
    width = int(flows.exporter_index.max()) + 1 if len(flows) else 1
    if exporters is None or not table.exporter_slots:
        return np.full(width, -1, np.int64)
    slots = table.slots_of(exporters)
    return (
        slots
        if len(slots) >= width
        else np.concatenate([slots, np.full(width - len(slots), -1, np.int64)])
    )


def _v4only(flows: FlowBatch) -> bool:
    """No IPv6 row in the batch (lets the kernels take their IPv4-only path)."""
    return not flows.has_ipv6 or bool((flows.ip_version == 4).all())


def _vlan(flows: FlowBatch) -> np.ndarray:
    return flows.vlan_id if flows.vlan_id is not None else np.zeros(len(flows), np.uint16)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Counts scaled by sampling and spans bounded: what the binning consumes."""

    octets: np.ndarray  # int64
    packets: np.ndarray  # int64
    start_ms: np.ndarray  # int64, start moved to end - MAX_FLOW_SPAN_MS for overlong flows
    end_ms: np.ndarray  # int64
    first_ms: int  # min start (0 when empty)
    last_ms: int  # max end (0 when empty)


def prepare(flows: FlowBatch, notes: Counter, unknown_rate: int = 1) -> Prepared:
    """Scale counts by each flow's sampling rate and bound spans; note every adjustment.

    A rate of 0 means unknown: ``unknown_rate`` is used and the flow noted
    (``sampling_rate_unknown``). A product beyond int64 saturates
    (``count_overflow_saturated``: only corrupt records get there). A span longer than
    MAX_FLOW_SPAN_MS keeps its bytes but starts at end - MAX_FLOW_SPAN_MS
    (``flow_span_clamped``).
    """
    n = len(flows)
    octets = np.empty(n, np.int64)
    packets = np.empty(n, np.int64)
    start = np.empty(n, np.int64)
    unknown, saturated, clamped, lo, hi = kernels.prepare(
        flows.octet_delta_count,
        flows.packet_delta_count,
        flows.sampling_interval,
        flows.flow_start_milliseconds,
        flows.flow_end_milliseconds,
        np.int64(unknown_rate),
        np.int64(MAX_FLOW_SPAN_MS),
        octets,
        packets,
        start,
    )
    for reason, count in (
        ("sampling_rate_unknown", unknown),
        ("count_overflow_saturated", saturated),
        ("flow_span_clamped", clamped),
    ):
        if count:
            notes[reason] += int(count)
    if n == 0:
        lo = hi = 0
    return Prepared(octets, packets, start, flows.flow_end_milliseconds, int(lo), int(hi))


def scaled_counts(
    flows: FlowBatch, notes: Counter, unknown_rate: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Octets and packets multiplied by each flow's sampling rate (see :func:`prepare`)."""
    p = prepare(flows, notes, unknown_rate)
    notes.pop("flow_span_clamped", None)
    return p.octets, p.packets


def bounded_times(flows: FlowBatch, notes: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Start and end times with spans capped at MAX_FLOW_SPAN_MS (see :func:`prepare`)."""
    scratch: Counter = Counter()
    p = prepare(flows, scratch)
    if scratch["flow_span_clamped"]:
        notes["flow_span_clamped"] += scratch["flow_span_clamped"]
    return p.start_ms, p.end_ms


def _windows(
    first_bin: np.ndarray, last_bin: np.ndarray, n_rows: int, bin_ms: int
) -> list[np.ndarray] | None:
    """None when one dense cube covers every flow; else groups of flow indices that fit."""
    span_bins = MAX_FLOW_SPAN_MS // bin_ms + 2
    window = max(MAX_CUBE_CELLS // (n_rows * 3 * 3), 2 * span_bins)
    if int(last_bin.max()) - int(first_bin.min()) + 1 <= window:
        return None
    return _time_groups(first_bin, span_bins, window)


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
    """Spread already classified flows over their bins; sum per (bin, owner row, direction).

    Spans must be bounded (see :func:`prepare`).
    """
    n = len(octets)
    if n == 0:
        return UsageRows.empty()
    first_bin = start_ms // bin_ms
    last_bin = end_ms // bin_ms
    groups = _windows(first_bin, last_bin, n_rows, bin_ms) or [np.arange(n)]
    parts = []
    for idx in groups:
        lo = int(first_bin[idx].min())
        cube = np.zeros((int(last_bin[idx].max()) - lo + 1, n_rows, 3, 3), dtype=np.int64)
        kernels.spread(
            attributed.owner[idx],
            attributed.direction[idx],
            octets[idx],
            packets[idx],
            start_ms[idx],
            end_ms[idx],
            np.int64(bin_ms),
            np.int64(lo),
            cube,
        )
        parts.append(UsageRows.from_cube(cube, lo, bin_ms))
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


def attribute(
    flows: FlowBatch,
    table: MemberTable,
    *,
    bin_ms: int,
    notes: Counter,
    uplinks: UplinkTable | None = None,
    exporters: np.ndarray | None = None,
    into: UsageAccumulator | None = None,
) -> UsageRows:
    """The whole per-batch accounting step: scale, bound, classify and bin in one pass.

    ``uplinks`` (indexed like ``flows.exporter_index``) restricts billing to flows that
    cross a declared uplink of their exporter (see accounting/exporters.py);
    ``exporters`` (the batch's exporter addresses) lets interface and VLAN rules apply.
    With ``into``, usage is added straight into that accumulator's cube where it fits,
    and only what did not fit is returned as rows (for ``into.add``).
    """
    n = len(flows)
    if n == 0:
        return UsageRows.empty()
    p = prepare(flows, notes)
    n_rows = table.rows
    if uplinks is None:
        uplinks = UplinkTable.none(int(flows.exporter_index.max()) + 1)
    src6, dst6 = _ipv6_columns(flows)
    rules = _rules(table)
    slots = _slots(table, flows, exporters)
    vlan = _vlan(flows)
    epoch_bins = table.epoch_start_ms // bin_ms
    v4only = _v4only(flows)
    # The common case takes a kernel without epoch and interface/VLAN logic.
    simple = table.epochs == 1 and not (slots >= 0).any()
    one_window = p.last_ms // bin_ms - p.first_ms // bin_ms + 1 <= MAX_CUBE_CELLS // (n_rows * 9)
    if one_window:
        groups: list[np.ndarray | None] = [None]  # every flow, in order
    else:
        groups = _windows(p.start_ms // bin_ms, p.end_ms // bin_ms, n_rows, bin_ms)
    parts = []
    for idx in groups:
        if idx is None:
            lo, hi = p.first_ms // bin_ms, p.last_ms // bin_ms
        else:
            lo = int(p.start_ms[idx].min()) // bin_ms
            hi = int(p.end_ms[idx].max()) // bin_ms
        target = into.cube_for(lo, hi, n_rows) if into is not None else None
        if target is None:
            cube, base = np.zeros((hi - lo + 1, n_rows, 3, 3), dtype=np.int64), lo
        else:
            cube, base = target
        if simple and idx is None:
            kernels.attribute_simple(
                v4only,
                flows.ip_version,
                flows.source_ipv4_address,
                flows.destination_ipv4_address,
                src6,
                dst6,
                rules,
                np.int64(table.size),
                flows.exporter_index,
                flows.ingress_interface,
                flows.egress_interface,
                uplinks.interfaces,
                uplinks.count,
                p.octets,
                p.packets,
                p.start_ms,
                p.end_ms,
                np.int64(bin_ms),
                np.int64(base),
                cube,
            )
        else:
            kernels.attribute(
                v4only,
                flows.ip_version,
                flows.source_ipv4_address,
                flows.destination_ipv4_address,
                src6,
                dst6,
                rules,
                epoch_bins,
                np.int64(table.size),
                flows.exporter_index,
                slots,
                flows.ingress_interface,
                flows.egress_interface,
                vlan,
                uplinks.interfaces,
                uplinks.count,
                p.octets,
                p.packets,
                p.start_ms,
                p.end_ms,
                np.arange(n, dtype=np.int64) if idx is None else idx.astype(np.int64),
                np.int64(bin_ms),
                np.int64(base),
                cube,
            )
        if target is None:
            parts.append(UsageRows.from_cube(cube, lo, bin_ms))
    if not parts:
        return UsageRows.empty()
    return parts[0] if len(parts) == 1 else UsageRows.combine(parts)


def _ipv6_columns(flows: FlowBatch) -> tuple[np.ndarray, np.ndarray]:
    """The IPv6 address columns, or (n, 2) placeholders for an IPv4-only batch."""
    if flows.has_ipv6:
        return flows.source_ipv6_address, flows.destination_ipv6_address
    if (flows.ip_version != 4).any():
        raise ValueError("FlowBatch has IPv6 rows but no IPv6 address columns")
    placeholder = np.zeros((1, 2), np.uint64)
    return placeholder, placeholder


# Above this many (bin, group) cells a dense count would cost more than sorting.
MAX_DENSE_COUNT_CELLS = 1 << 22


def count_by_bin(time_ms: np.ndarray, group: np.ndarray, bin_ms: int) -> list[tuple[int, int, int]]:
    """(bin start ms, group, count) for every pair present, in (bin, group) order: the
    per-exporter datagram and flow counters. One compiled pass sizes a dense count, a
    second fills it (a sort only when the times are spread too widely for that)."""
    if len(time_ms) == 0:
        return []
    time_ms = np.ascontiguousarray(time_ms, np.int64)
    lo, hi, top = kernels.bin_extent(time_ms, group, np.int64(bin_ms))
    width = int(top) + 1
    if (int(hi) - int(lo) + 1) * width <= MAX_DENSE_COUNT_CELLS:
        counts = np.zeros((int(hi) - int(lo) + 1, width), np.int64)
        kernels.count_in_bins(time_ms, group, np.int64(bin_ms), lo, counts)
        return dense_counts(counts, int(lo), bin_ms)
    key = (time_ms // bin_ms) * width + group.astype(np.int64)
    present, values = np.unique(key, return_counts=True)
    bins, groups = np.divmod(present, width)
    return _count_rows(bins, groups, values, bin_ms)


def dense_counts(counts: np.ndarray, first_bin: int, bin_ms: int) -> list[tuple[int, int, int]]:
    """(bin start ms, group, count) of every non-zero cell of a dense [bin - first_bin,
    group] count, in (bin, group) order."""
    bins, groups = np.nonzero(counts)
    return _count_rows(bins + first_bin, groups, counts[bins, groups], bin_ms)


def _count_rows(bins, groups, values, bin_ms: int) -> list[tuple[int, int, int]]:
    return [
        (b * bin_ms, g, c)
        for b, g, c in zip(bins.tolist(), groups.tolist(), values.tolist(), strict=True)
    ]
