"""Ground truth of synthetic flows: exact usage per (owner, bin, direction).

Written independently of the accounting kernels (numpy, vectorised over bin pieces), from
the same published definition: counts are multiplied by the sampling rate, a flow covers
[start, end) and the part of a count before time t is floor(count * (t - start) / span);
a zero-length flow sits whole in its start bin; the flow is counted in its start bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.synth.model import SynthFlows


@dataclass(frozen=True)
class Truth:
    """Usage rows keyed by (owner, bin start ms, direction); owner -2 internal, -1 unattributed."""

    owner: np.ndarray
    bin_start_ms: np.ndarray
    direction: np.ndarray
    bytes: np.ndarray
    packets: np.ndarray
    flows: np.ndarray

    def totals_by_owner(self) -> dict[tuple[int, int], int]:
        """Bytes per (owner, direction)."""
        out: dict[tuple[int, int], int] = {}
        for o, d, b in zip(
            self.owner.tolist(), self.direction.tolist(), self.bytes.tolist(), strict=True
        ):
            out[(o, d)] = out.get((o, d), 0) + b
        return out


def _floor_share(total: np.ndarray, part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    q, r = np.divmod(total, whole)
    return q * part + (r * part) // whole


def ground_truth(flows: SynthFlows, rates: np.ndarray, bin_ms: int) -> Truth:
    """Exact usage of ``flows``; ``rates[e]`` is exporter e's sampling rate."""
    rate = np.asarray(rates, dtype=np.int64)[flows.exporter]
    total_b = flows.octets.astype(np.int64) * rate
    total_p = flows.packets.astype(np.int64) * rate
    start, end = flows.start_ms, flows.end_ms
    span = end - start
    first = start // bin_ms
    last = np.where(span > 0, end // bin_ms, first)
    pieces = (last - first + 1).astype(np.int64)
    flow_of = np.repeat(np.arange(len(flows)), pieces)
    group_start = np.repeat(np.cumsum(pieces) - pieces, pieces)
    k = np.arange(len(flow_of)) - group_start
    b = first[flow_of] + k
    s = start[flow_of]
    e = end[flow_of]
    sp = span[flow_of]
    elapsed = np.minimum((b + 1) * bin_ms, e) - s
    safe = np.where(sp > 0, sp, 1)
    cum_b = np.where(sp > 0, _floor_share(total_b[flow_of], elapsed, safe), total_b[flow_of])
    cum_p = np.where(sp > 0, _floor_share(total_p[flow_of], elapsed, safe), total_p[flow_of])
    prev_b = np.where(k > 0, np.roll(cum_b, 1), 0)
    prev_p = np.where(k > 0, np.roll(cum_p, 1), 0)
    part_b = cum_b - prev_b
    part_p = cum_p - prev_p
    counted = (k == 0).astype(np.int64)
    owner = flows.owner[flow_of].astype(np.int64)
    direction = flows.direction[flow_of].astype(np.int64)
    order = np.lexsort((direction, b, owner))
    key = np.stack([owner[order], b[order], direction[order]])
    new = np.ones(len(order), bool)
    new[1:] = (key[:, 1:] != key[:, :-1]).any(axis=0)
    starts = np.flatnonzero(new)
    sums = [np.add.reduceat(x[order], starts) for x in (part_b, part_p, counted)]
    keep = (sums[0] != 0) | (sums[1] != 0) | (sums[2] != 0)  # pieces of zero length add nothing
    return Truth(
        owner=key[0, starts][keep].astype(np.int32),
        bin_start_ms=key[1, starts][keep] * bin_ms,
        direction=key[2, starts][keep].astype(np.int8),
        bytes=sums[0][keep],
        packets=sums[1][keep],
        flows=sums[2][keep],
    )
