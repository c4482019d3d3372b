"""What the configuration says about exporters, applied to datagrams and flows.

- The allow-list: datagrams from a router not declared under [[exporters]] are dropped
  before decoding (they must not create template state) and counted per source address,
  unless ``allow_unknown_exporters = true``.
- Sampling: a declared ``sampling_rate`` is used for flows whose export carries no rate,
  or for every flow of that exporter with ``override_sampling = true``.
- Uplinks: a declared list of ifIndexes gives, per batch, the table the kernel uses to
  bill only flows crossing an uplink and to give unattributed flows a direction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from accounting.collector_config import ExporterConfig
from collector.batch import FlowBatch
from collector.datagrams import DatagramBatch, address_to_pair, pair_to_address, unique_addresses

NO_UPLINK = -1


@dataclass(frozen=True, slots=True)
class UplinkTable:
    """Per batch exporter index: its uplink ifIndexes (padded with -1; none = no filter)."""

    interfaces: np.ndarray  # int64[E, K]
    count: np.ndarray  # int64[E]

    @staticmethod
    def none(n_exporters: int) -> UplinkTable:
        return UplinkTable(
            np.full((max(n_exporters, 1), 1), NO_UPLINK, np.int64),
            np.zeros(max(n_exporters, 1), np.int64),
        )


class ExporterPolicy:
    """The [[exporters]] declarations, ready to apply to batches."""

    def __init__(self, exporters: tuple[ExporterConfig, ...], allow_unknown: bool) -> None:
        self.allow_unknown = allow_unknown
        self._by_pair = {address_to_pair(e.address): e for e in exporters}

    def declared(self, pair: tuple[int, int]) -> ExporterConfig | None:
        return self._by_pair.get(pair)

    def filter_datagrams(self, batch: DatagramBatch, dropped_by_source: Counter) -> DatagramBatch:
        """The datagrams of allowed exporters; the others counted by source address."""
        if self.allow_unknown or len(batch) == 0:
            return batch
        uniques, inverse = unique_addresses(batch.source_address)
        allowed = np.array(
            [(int(hi), int(lo)) in self._by_pair for hi, lo in uniques.tolist()], dtype=bool
        )
        if allowed.all():
            return batch
        keep = allowed[inverse]
        counts = np.bincount(inverse[~keep], minlength=len(uniques))
        for k in np.flatnonzero(counts):
            dropped_by_source[str(pair_to_address(*uniques[k]))] += int(counts[k])
        return batch.select(keep)

    def apply_sampling(self, flows: FlowBatch, exporters: np.ndarray) -> FlowBatch:
        """Flows with the configured sampling rates applied (see module docstring)."""
        if not self._by_pair or len(flows) == 0:
            return flows
        configs = [self._by_pair.get((int(hi), int(lo))) for hi, lo in exporters.tolist()]
        if not any(c is not None and c.sampling_rate for c in configs):
            return flows
        override = np.array(
            [c.sampling_rate if c and c.override_sampling else 0 for c in configs], np.uint32
        )
        default = np.array([c.sampling_rate or 0 if c else 0 for c in configs], np.uint32)
        e = flows.exporter_index
        rate = flows.sampling_interval
        rate = np.where(rate == 0, default[e], rate)
        rate = np.where(override[e] > 0, override[e], rate).astype(np.uint32)
        return replace(flows, sampling_interval=rate)

    def uplinks(self, exporters: np.ndarray) -> UplinkTable:
        """The uplink table for a batch whose exporter list is ``exporters``."""
        configs = [self._by_pair.get((int(hi), int(lo))) for hi, lo in exporters.tolist()]
        widest = max((len(c.uplinks) for c in configs if c), default=0)
        if widest == 0:
            return UplinkTable.none(len(configs))
        table = np.full((len(configs), widest), NO_UPLINK, np.int64)
        count = np.zeros(len(configs), np.int64)
        for i, c in enumerate(configs):
            if c and c.uplinks:
                table[i, : len(c.uplinks)] = c.uplinks
                count[i] = len(c.uplinks)
        return UplinkTable(table, count)
