"""UsageRows: sparse per-bin usage, the currency between the kernels and the store.

Kept apart from the kernels so that readers of the store never import numba.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The last axis of a usage cube (bin, owner row, direction, metric), as the kernels fill it.
METRIC_BYTES = 0
METRIC_PACKETS = 1
METRIC_FLOWS = 2


@dataclass(frozen=True, slots=True)
class UsageRows:
    """Sparse usage: one row per (bin, owner row, direction) that saw a flow."""

    bin_start_ms: np.ndarray  # int64
    owner: np.ndarray  # int32: member row, M = internal, M+1 = unattributed
    direction: np.ndarray  # int8: 0 in, 1 out, 2 none
    bytes: np.ndarray  # int64
    packets: np.ndarray  # int64
    flows: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.bin_start_ms)

    @staticmethod
    def from_cube(cube: np.ndarray, bin0: int, bin_ms: int) -> UsageRows:
        """The cells of a (bin, owner row, direction, metric) cube with any count; bin 0
        of the cube is absolute bin ``bin0``."""
        rel_bin, owner, direction = np.nonzero(cube.any(axis=3))
        values = cube[rel_bin, owner, direction]
        return UsageRows(
            (rel_bin.astype(np.int64) + bin0) * bin_ms,
            owner.astype(np.int32),
            direction.astype(np.int8),
            np.ascontiguousarray(values[:, METRIC_BYTES]),
            np.ascontiguousarray(values[:, METRIC_PACKETS]),
            np.ascontiguousarray(values[:, METRIC_FLOWS]),
        )

    @staticmethod
    def empty() -> UsageRows:
        z = np.zeros(0, np.int64)
        return UsageRows(z, z.astype(np.int32), z.astype(np.int8), z, z, z)

    @staticmethod
    def combine(parts: list[UsageRows]) -> UsageRows:
        """Concatenate and sum rows sharing a (bin, owner, direction) key."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return UsageRows.empty()
        cat = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("bin_start_ms", "owner", "direction", "bytes", "packets", "flows")
        }
        order = np.lexsort((cat["direction"], cat["owner"], cat["bin_start_ms"]))
        keys = np.stack(
            [
                cat["bin_start_ms"][order],
                cat["owner"][order].astype(np.int64),
                cat["direction"][order].astype(np.int64),
            ]
        )
        new_group = np.ones(len(order), dtype=bool)
        new_group[1:] = (keys[:, 1:] != keys[:, :-1]).any(axis=0)
        starts = np.flatnonzero(new_group)
        return UsageRows(
            keys[0, starts],
            keys[1, starts].astype(np.int32),
            keys[2, starts].astype(np.int8),
            np.add.reduceat(cat["bytes"][order], starts),
            np.add.reduceat(cat["packets"][order], starts),
            np.add.reduceat(cat["flows"][order], starts),
        )


class UsageAccumulator:
    """Sums UsageRows as they arrive, into a dense (bin, owner, direction) cube.

    Why: a collector's harvest is thousands of batches of a few thousand rows each; summing
    them at flush time by one sort of all rows took seconds on the receiving thread. Here
    each batch costs one indexed add per row, and :meth:`rows` reads the cube once. Rows
    whose bins or owners would make the cube larger than ``max_cells`` (very late data)
    are kept aside and summed the old way.
    """

    def __init__(self, bin_ms: int, max_cells: int = 1 << 21) -> None:
        self.bin_ms = bin_ms
        self.max_cells = max_cells
        self._cube = np.zeros((0, 0, 3, 3), np.int64)  # bin, owner, direction, metric
        self._bin0 = 0
        self._aside: list[UsageRows] = []

    def add(self, rows: UsageRows) -> None:
        if not len(rows):
            return
        bins = rows.bin_start_ms // self.bin_ms
        lo, hi = int(bins.min()), int(bins.max())
        owners = int(rows.owner.max()) + 1
        if not self._fit(lo, hi, owners):
            self._aside.append(rows)
            return
        cube = self._cube
        flat = (((bins - self._bin0) * cube.shape[1] + rows.owner) * 3 + rows.direction) * 3
        view = cube.reshape(-1)
        np.add.at(view, flat + METRIC_BYTES, rows.bytes)
        np.add.at(view, flat + METRIC_PACKETS, rows.packets)
        np.add.at(view, flat + METRIC_FLOWS, rows.flows)

    def cube_for(self, lo: int, hi: int, owners: int) -> tuple[np.ndarray, int] | None:
        """The running cube, grown to cover bins lo..hi and ``owners`` owner rows, and the
        absolute bin of its first plane: the attribution kernels add a batch straight
        into it (no per-batch cube, no sparse rows to add back). None when it would grow
        past ``max_cells``: the caller then hands rows to :meth:`add`."""
        if not self._fit(lo, hi, owners):
            return None
        return self._cube, self._bin0

    def _fit(self, lo: int, hi: int, owners: int) -> bool:
        """Grow the cube to cover bins lo..hi and ``owners`` owner rows; False if too big."""
        cube = self._cube
        if cube.shape[0]:
            new_lo, new_hi = min(lo, self._bin0), max(hi, self._bin0 + cube.shape[0] - 1)
        else:
            new_lo, new_hi = lo, hi
        new_owners = max(owners, cube.shape[1])
        shape = (new_hi - new_lo + 1, new_owners, 3, 3)
        if shape[:2] == cube.shape[:2] and new_lo == self._bin0:
            return True
        if shape[0] * shape[1] * 3 > self.max_cells:
            return False
        grown = np.zeros(shape, np.int64)
        if cube.shape[0]:
            offset = self._bin0 - new_lo
            grown[offset : offset + cube.shape[0], : cube.shape[1]] = cube
        self._cube, self._bin0 = grown, new_lo
        return True

    def rows(self) -> UsageRows:
        """Everything added so far, one row per (bin, owner, direction) with any count."""
        dense = UsageRows.from_cube(self._cube, self._bin0, self.bin_ms)
        return UsageRows.combine([dense, *self._aside]) if self._aside else dense
