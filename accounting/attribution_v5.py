"""NetFlow v5 records attributed where they lie in the receive buffer (no FlowBatch).

The collector's commonest load is v5 from routers whose members are plain prefixes. For
that case :func:`attribute_v5_in_place` runs one compiled pass from the datagrams to the
running usage cube (accounting/kernels_v5.py says why that is faster). Whatever it does
not take (member rules with several epochs or interface/VLAN rules, records whose bins
lie outside the running cube) comes back to the caller, who sends it through the general
path: :func:`accounting.attribution.attribute`. The two paths give equal usage, notes and
counters (tests/test_attribution_v5.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from accounting.attribution import MAX_FLOW_SPAN_MS
from accounting.exporters import UplinkTable
from accounting.members import MemberTable
from accounting.usage import UsageAccumulator
from collector.decode.netflow5 import V5Flows, export_milliseconds


@dataclass(frozen=True, slots=True)
class InPlace:
    """What the in-place pass did: the flows it counted per (bin start ms, exporter
    index), their time range, and the records it left for the general path."""

    flow_counts: list[tuple[int, int, int]]
    first_ms: int | None
    last_ms: int | None
    left: V5Flows | None  # None: every record was attributed


def in_place_possible(table: MemberTable, exporters: np.ndarray) -> bool:
    """One epoch and no interface/VLAN rule for these exporters (what the kernel covers)."""
    if table.epochs != 1:
        return False
    return not table.exporter_slots or not (table.slots_of(exporters) >= 0).any()


def attribute_v5_in_place(
    v5: V5Flows,
    table: MemberTable,
    *,
    bin_ms: int,
    notes: Counter,
    uplinks: UplinkTable,
    into: UsageAccumulator,
    n_exporters: int,
) -> InPlace:
    """Attribute ``v5`` into ``into``'s cube; return what was counted and what was left.

    The cube is first grown to the bins of the datagrams' export times (where flows of a
    live stream end); records outside the cube's bins are left, never guessed.
    Call only when :func:`in_place_possible` holds for the batch's exporters.
    """
    from accounting.kernels_v5 import attribute_v5

    if len(v5) == 0:
        return InPlace([], None, None, None)
    records = v5.records
    export_ms = export_milliseconds(records.headers)
    target = into.cube_for(
        int(export_ms.min()) // bin_ms, int(export_ms.max()) // bin_ms, table.rows
    )
    if target is None:
        return InPlace([], None, None, v5)
    cube, bin0 = target
    flow_counts = np.zeros((cube.shape[0], max(n_exporters, 1)), np.int64)
    spill_datagram = np.empty(len(v5), np.int64)
    spill_offset = np.empty(len(v5), np.int64)
    spilled, inverted, unknown, saturated, clamped, lo, hi = attribute_v5(
        records.buffer,
        records.record_offsets,
        records.counts,
        export_ms,
        records.headers["sys_uptime"].astype(np.int64),
        v5.rate,
        v5.exporter_index,
        table.v4_roots,
        table.v4_chunks,
        np.int64(table.size),
        uplinks.interfaces,
        uplinks.count,
        np.int64(1),
        np.int64(MAX_FLOW_SPAN_MS),
        np.int64(bin_ms),
        np.int64(bin0),
        cube,
        flow_counts,
        spill_datagram,
        spill_offset,
    )
    for reason, count in (
        ("v5_end_before_start", inverted),
        ("sampling_rate_unknown", unknown),
        ("count_overflow_saturated", saturated),
        ("flow_span_clamped", clamped),
    ):
        if count:
            notes[reason] += int(count)
    bins, exporters = np.nonzero(flow_counts)
    counted = [
        (b * bin_ms, e, c)
        for b, e, c in zip(
            (bins + bin0).tolist(),
            exporters.tolist(),
            flow_counts[bins, exporters].tolist(),
            strict=True,
        )
    ]
    left = None
    if spilled:
        left = v5.subset(spill_datagram[:spilled], spill_offset[:spilled])
    attributed = len(v5) - int(spilled)
    return InPlace(
        counted,
        int(lo) if attributed else None,
        int(hi) if attributed else None,
        left,
    )
