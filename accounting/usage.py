"""UsageRows: sparse per-bin usage, the currency between the kernels and the store.

Kept apart from the kernels so that readers of the store never import numba.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
