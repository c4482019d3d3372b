"""Sampling rates of NetFlow v9 / IPFIX exporters, learnt from options data and records.

Where a rate comes from, in the order the decoder applies them to a flow record:

1. a per-exporter **override** from the configuration (``[[exporters]] sampling_rate``
   with ``override = true``): the operator knows better than the router;
2. the record itself: samplingInterval (34, v9 SAMPLING_INTERVAL) or
   samplingPacketInterval/Space (305/306: rate = (interval + space) / interval);
3. the sampler the record names — samplerId (48, v9 FLOW_SAMPLER_ID) or selectorId
   (302) — looked up in the rates learnt from options data for
   (exporter, observation domain, sampler id);
4. the rate options data gave for the whole (exporter, domain) without a sampler id
   (e.g. v9 options with SAMPLING_INTERVAL/ALGORITHM 34/35 and a System scope);
5. the per-exporter **default** from the configuration, then the global default;
6. otherwise the rate is *unknown*: ``sampling_interval = 0`` in the FlowBatch, counted
   by the decoder as ``sampling_rate_unknown``; accounting multiplies such counts by 1
   and counts them again (visible in reports). This is the documented policy.

Options data give a rate through samplerRandomInterval (50), samplingInterval (34),
samplingPacketInterval/Space (305/306) or samplingPopulation/Size (310/309), first
present wins. A rate of 0 is ignored (it says nothing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from collector.datagrams import address_to_pair
from collector.decode import fields as ie

ExporterKey = tuple[int, int]
MAX_TIME_MS = 1 << 46  # ~ year 4200: larger "times" are corrupt and would overflow int64 maths


@dataclass(frozen=True)
class SamplingPolicy:
    """Configured rates per exporter address (text), and a global default (None = unknown)."""

    overrides: dict[str, int] = field(default_factory=dict)
    defaults: dict[str, int] = field(default_factory=dict)
    default_rate: int | None = None

    def compiled(self) -> tuple[dict[ExporterKey, int], dict[ExporterKey, int]]:
        over = {address_to_pair(a): int(r) for a, r in self.overrides.items()}
        dflt = {address_to_pair(a): int(r) for a, r in self.defaults.items()}
        return over, dflt


def rate_from_values(values: dict[int, int]) -> int:
    """The packets-per-sample rate an options (or flow) record states, 0 if none."""
    if values.get(ie.SAMPLER_RANDOM_INTERVAL, 0) > 0:
        return values[ie.SAMPLER_RANDOM_INTERVAL]
    if values.get(ie.SAMPLING_INTERVAL, 0) > 0:
        return values[ie.SAMPLING_INTERVAL]
    interval = values.get(ie.SAMPLING_PACKET_INTERVAL, 0)
    if interval > 0:
        space = values.get(ie.SAMPLING_PACKET_SPACE, 0)
        return max(1, (interval + space) // interval)
    size = values.get(ie.SAMPLING_SIZE, 0)
    if size > 0 and values.get(ie.SAMPLING_POPULATION, 0) > 0:
        return max(1, values[ie.SAMPLING_POPULATION] // size)
    return 0


def sampler_of(values: dict[int, int]) -> int | None:
    """The sampler an options record describes (samplerId, else selectorId), or None."""
    if ie.SAMPLER_ID in values:
        return values[ie.SAMPLER_ID]
    if ie.SELECTOR_ID in values:
        return values[ie.SELECTOR_ID]
    return None


class SamplingState:
    """Rates learnt from options data, and system init times (IPFIX), per exporter/domain."""

    def __init__(self, policy: SamplingPolicy | None = None, samplers_per_exporter: int = 1024):
        self.policy = policy or SamplingPolicy()
        self.overrides, self.defaults = self.policy.compiled()
        self.samplers_per_exporter = samplers_per_exporter
        # (exporter, version, domain, sampler id or None) -> rate
        self.rates: dict[tuple[ExporterKey, int, int, int | None], int] = {}
        self._count: Counter = Counter()
        # (exporter, domain) -> systemInitTimeMilliseconds (IPFIX sysUpTime base)
        self.init_time_ms: dict[tuple[ExporterKey, int], int] = {}

    def set_policy(self, policy: SamplingPolicy) -> None:
        """New configured rates (a configuration reload); learnt rates are kept."""
        self.policy = policy
        self.overrides, self.defaults = policy.compiled()

    def learn(
        self,
        exporter: ExporterKey,
        version: int,
        domain: int,
        values: dict[int, int],
        errors: Counter,
    ) -> None:
        """Apply one options data record."""
        if ie.SYSTEM_INIT_TIME_MILLISECONDS in values:
            init = values[ie.SYSTEM_INIT_TIME_MILLISECONDS]
            if 0 < init < MAX_TIME_MS:
                self.init_time_ms[(exporter, domain)] = init
            else:
                errors["implausible_system_init_time"] += 1
        rate = rate_from_values(values)
        if rate <= 0:
            return
        key = (exporter, version, domain, sampler_of(values))
        if key not in self.rates:
            if self._count[exporter] >= self.samplers_per_exporter:
                errors["sampler_limit_exceeded"] += 1
                return
            self._count[exporter] += 1
        self.rates[key] = rate
        errors["sampling_rates_learnt"] += 1

    def sampler_rate(self, exporter: ExporterKey, version: int, domain: int, sampler: int) -> int:
        return self.rates.get((exporter, version, domain, sampler), 0)

    def domain_rate(self, exporter: ExporterKey, version: int, domain: int) -> int:
        return self.rates.get((exporter, version, domain, None), 0)

    def fallback_rate(self, exporter: ExporterKey) -> int:
        """Configured default for the exporter, else the global default, else 0 (unknown)."""
        rate = self.defaults.get(exporter)
        if rate:
            return rate
        return int(self.policy.default_rate or 0)

    def snapshot(self) -> dict:
        """JSON-serialisable state (rates and init times)."""
        from collector.datagrams import pair_to_address

        return {
            "rates": [
                [str(pair_to_address(*e)), v, d, s, r] for (e, v, d, s), r in self.rates.items()
            ],
            "init_time_ms": [
                [str(pair_to_address(*e)), d, t] for (e, d), t in self.init_time_ms.items()
            ],
        }

    def restore(self, snap: dict) -> None:
        for a, v, d, s, r in snap.get("rates", []):
            self.rates[(address_to_pair(a), int(v), int(d), None if s is None else int(s))] = int(r)
        for a, d, t in snap.get("init_time_ms", []):
            self.init_time_ms[(address_to_pair(a), int(d))] = int(t)
