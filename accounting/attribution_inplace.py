"""Flow records attributed where they lie in the receive buffer (no FlowBatch).

The collector's commonest loads are NetFlow v5 and v9/IPFIX templates of IPv4 flows, from
routers whose members are plain prefixes. For that case :func:`attribute_in_place` runs
one compiled pass from the datagrams to the running usage cube
(accounting/kernels_inplace.py says why that is faster). Whatever it does not take
(member rules with several epochs or interface/VLAN rules, records whose bins lie outside
the running cube) comes back to the caller as a FlowBatch decoded the usual way, for the
general path: :func:`accounting.attribution.attribute`. The two paths give equal usage,
notes and counters (tests/test_attribution_inplace.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from accounting.attribution import MAX_FLOW_SPAN_MS, dense_counts
from accounting.exporters import UplinkTable
from accounting.members import MemberTable
from accounting.usage import UsageAccumulator
from collector.batch import FlowBatch
from collector.decode.inplace import RecordSets


@dataclass(frozen=True, slots=True)
class InPlace:
    """What the in-place pass did: the flows it counted per (bin start ms, exporter
    index), their time range, and the records it left, decoded (None: none left)."""

    flow_counts: list[tuple[int, int, int]]
    first_ms: int | None
    last_ms: int | None
    left: FlowBatch | None


def in_place_possible(table: MemberTable, exporters: np.ndarray) -> bool:
    """One epoch and no interface/VLAN rule for these exporters (what the kernel covers)."""
    if table.epochs != 1:
        return False
    return not table.exporter_slots or not (table.slots_of(exporters) >= 0).any()


def attribute_in_place(
    sets: RecordSets,
    table: MemberTable,
    *,
    bin_ms: int,
    notes: Counter,
    uplinks: UplinkTable,
    into: UsageAccumulator,
    n_exporters: int,
) -> InPlace:
    """Attribute ``sets`` into ``into``'s cube; return what was counted and what was left.

    The cube is first grown to the bins of the sets' export times (where flows of a live
    stream end); records outside the cube's bins are left, never guessed. Notes go to
    ``notes`` under the names the decoder and :func:`~accounting.attribution.prepare`
    give them. Call only when :func:`in_place_possible` holds for the batch's exporters.
    """
    from accounting import kernels_inplace

    if len(sets) == 0:
        return InPlace([], None, None, None)
    export_ms = sets.export_ms
    target = into.cube_for(
        int(export_ms.min()) // bin_ms, int(export_ms.max()) // bin_ms, table.rows
    )
    if target is None:
        return InPlace([], None, None, sets.to_flow_batch(notes))
    cube, bin0 = target
    flow_counts = np.zeros((cube.shape[0], max(n_exporters, 1)), np.int64)
    spill_set = np.empty(len(sets), np.int64)
    spill_offset = np.empty(len(sets), np.int64)
    tables = (
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
        spill_set,
        spill_offset,
    )
    per_set = (sets.export_ms, sets.uptime, sets.rate, sets.exporter_index)
    if sets.is_v5:
        result = kernels_inplace.attribute_v5(
            sets.buffer, sets.set_starts, sets.per_set, *per_set, *tables
        )
    else:
        result = kernels_inplace.attribute_records(
            sets.buffer,
            sets.set_starts,
            sets.per_set,
            np.int64(sets.record_length),
            sets.layout,
            np.int64(sets.times),
            *per_set,
            *tables,
        )
    spilled, inverted, unknown, saturated, clamped, lo, hi = result
    for reason, count in (
        (sets.end_before_start_note, inverted),
        (sets.rate_unknown_note, unknown),
        ("sampling_rate_unknown", unknown),
        ("count_overflow_saturated", saturated),
        ("flow_span_clamped", clamped),
    ):
        if count and reason is not None:
            notes[reason] += int(count)
    counted = dense_counts(flow_counts, bin0, bin_ms)
    left = None
    if spilled:
        left = sets.materialize(spill_set[:spilled], spill_offset[:spilled], notes)
    attributed = len(sets) - int(spilled)
    return InPlace(
        counted,
        int(lo) if attributed else None,
        int(hi) if attributed else None,
        left,
    )
