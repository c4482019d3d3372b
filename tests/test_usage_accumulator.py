"""UsageAccumulator sums usage rows exactly as UsageRows.combine does (the slow reference),
whether the rows fit its dense cube or are kept aside for being too spread out."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.usage import UsageAccumulator, UsageRows

BIN_MS = 300_000


def _rows(rng: np.random.Generator, n: int, bins: int, owners: int, bin0: int) -> UsageRows:
    return UsageRows(
        (bin0 + rng.integers(0, bins, n)) * BIN_MS,
        rng.integers(0, owners, n).astype(np.int32),
        rng.integers(0, 3, n).astype(np.int8),
        rng.integers(0, 1 << 40, n),
        rng.integers(0, 1 << 20, n),
        rng.integers(0, 3, n),
    )


def _as_dict(rows: UsageRows) -> dict:
    out: dict = {}
    for b, o, d, by, p, f in zip(
        rows.bin_start_ms.tolist(),
        rows.owner.tolist(),
        rows.direction.tolist(),
        rows.bytes.tolist(),
        rows.packets.tolist(),
        rows.flows.tolist(),
        strict=True,
    ):
        if by or p or f:
            out[(b, o, d)] = (by, p, f)
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    parts=st.integers(1, 12),
    max_cells=st.sampled_from([30, 600, 1 << 21]),
)
def test_accumulator_equals_the_sorting_reference(seed, parts, max_cells):
    rng = np.random.default_rng(seed)
    batches = [
        _rows(
            rng,
            int(rng.integers(0, 50)),
            bins=int(rng.integers(1, 6)),
            owners=int(rng.integers(1, 20)),
            bin0=29_000_000 + int(rng.integers(-8, 8)),  # late and early batches too
        )
        for _ in range(parts)
    ]
    accumulator = UsageAccumulator(BIN_MS, max_cells=max_cells)
    for b in batches:
        accumulator.add(b)
    got = accumulator.rows()
    want = UsageRows.combine(batches)
    assert _as_dict(got) == _as_dict(want)
    keys = list(
        zip(got.bin_start_ms.tolist(), got.owner.tolist(), got.direction.tolist(), strict=True)
    )
    assert len(keys) == len(set(keys)), "one row per (bin, owner, direction)"


def test_rows_far_apart_are_kept_aside_not_lost():
    rng = np.random.default_rng(1)
    recent = _rows(rng, 100, bins=2, owners=10, bin0=29_000_000)
    a_year_old = _rows(rng, 5, bins=1, owners=10, bin0=29_000_000 - 105_120)
    accumulator = UsageAccumulator(BIN_MS, max_cells=10_000)
    accumulator.add(recent)
    accumulator.add(a_year_old)
    assert accumulator._cube.shape[0] == 2  # the old rows did not stretch the cube
    got = _as_dict(accumulator.rows())
    assert got == _as_dict(UsageRows.combine([recent, a_year_old]))
    assert sum(v[0] for v in got.values()) == int(recent.bytes.sum() + a_year_old.bytes.sum())


def _shifted(flows, ms: int):
    """The same flows, ``ms`` later."""
    cols = flows.columns()
    cols["flow_start_milliseconds"] = cols["flow_start_milliseconds"] + ms
    cols["flow_end_milliseconds"] = cols["flow_end_milliseconds"] + ms
    return type(flows)(**cols)


def test_attributing_into_the_accumulator_equals_adding_the_rows(tmp_path):
    """attribute(into=...) adds straight into the running cube where it fits and returns
    the rest; the sums are those of attributing to rows and adding them, also when
    batches arrive a year late (outside the cube) and for a small cube that fits
    nothing."""
    from collections import Counter

    from accounting.attribution import attribute
    from accounting.config import load_config
    from accounting.members import compile_registry
    from collector.batch import FlowBatch
    from collector.decode import Decoder
    from collector.pcap import read_datagrams
    from collector.synth.model import TrafficSpec
    from collector.synth.scenario_v9 import templated_scenario

    scenario = templated_scenario(
        tmp_path, protocol="ipfix", members=10, spec=TrafficSpec(seed=3, flows=4000)
    )
    config = load_config(scenario.config)
    table = compile_registry(config.registry, config.billing.timezone)
    decoder = Decoder()
    flows = FlowBatch.concat([decoder.decode(b).flows for b in read_datagrams(scenario.capture)])
    # Batches of 500 flows, latest first: each starts in a different bin of the cube.
    batches = [
        flows.take(np.arange(i, min(i + 500, len(flows)))) for i in range(0, len(flows), 500)
    ]
    batches.reverse()
    assert len({int(f.flow_start_milliseconds.min()) // BIN_MS for f in batches}) > 3
    batches.append(_shifted(batches[0], -365 * 86_400_000))  # a year late
    for max_cells in (1 << 21, 30):
        by_rows = UsageAccumulator(BIN_MS, max_cells=max_cells)
        direct = UsageAccumulator(BIN_MS, max_cells=max_cells)
        returned = []
        for flows in batches:
            by_rows.add(attribute(flows, table, bin_ms=BIN_MS, notes=Counter()))
            rest = attribute(flows, table, bin_ms=BIN_MS, notes=Counter(), into=direct)
            returned.append(len(rest))
            direct.add(rest)
        want = _as_dict(by_rows.rows())
        assert want and _as_dict(direct.rows()) == want
        # The big cube takes the recent batches directly, not the late one; the tiny
        # cube takes none.
        recent, late = returned[:-1], returned[-1]
        assert late > 0
        assert all(n > 0 for n in recent) if max_cells == 30 else not any(recent)
