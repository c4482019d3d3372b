"""What the configuration says about exporters, applied to datagrams and flows.

- The allow-list: datagrams from a router not declared under [[exporters]] are dropped
  before decoding (they must not create template state) and counted per source address,
  unless ``allow_unknown_exporters = true``.
- Sampling: a declared ``sampling_rate`` is used for flows whose export carries no rate,
  or for every flow of that exporter with ``override_sampling = true`` (handed to the
  decoder as a SamplingPolicy).
- Uplinks: a declared list of ifIndexes gives, per batch, the table the kernel uses to
  bill only flows crossing an uplink and to give unattributed flows a direction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from accounting.collector_config import ExporterConfig
from collector.datagrams import DatagramBatch, address_to_pair, pair_to_address, unique_addresses
from collector.decode.sampling import SamplingPolicy

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
        self._exporters = exporters
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

    def sampling_policy(self) -> SamplingPolicy:
        """The configured rates, for the decoder (which applies them in its documented
        order: override, the export's own rate, sampler, domain, default)."""
        return SamplingPolicy(
            overrides={
                str(e.address): e.sampling_rate
                for e in self._exporters
                if e.override_sampling and e.sampling_rate
            },
            defaults={str(e.address): e.sampling_rate for e in self._exporters if e.sampling_rate},
        )

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
