"""Attribution inline (one usable core) and on its own thread give the same harvest.

The collector and ingest attribute on the feeding thread when the process may use one
core only (accounting/pipeline.py). Both modes run here on the same generated capture,
with datagrams the allow-list drops and garbage the decoder drops, and every part of
the harvest (usage, counters, drops, notes, time range) must be equal, and equal the
ground truth.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from test_usage_accumulator import _as_dict

from accounting.config import load_config
from accounting.members import compile_registry
from accounting.pipeline import Pipeline
from collector.datagrams import DatagramBatch
from collector.pcap import read_datagrams
from collector.synth.model import DIR_IN, DIR_OUT, TrafficSpec
from collector.synth.scenario import v5_scenario
from collector.synth.scenario_v9 import templated_scenario


def _batches(scenario) -> list[DatagramBatch]:
    whole = list(read_datagrams(scenario.capture))
    batches = [
        b.select(np.arange(i, min(i + 64, len(b)))) for b in whole for i in range(0, len(b), 64)
    ]
    first = batches[0]
    garbage = DatagramBatch.from_payloads(
        [b"\x00\x05short", b"\x12\x34" * 40],
        ["192.0.2.200", "192.0.2.201"],  # undeclared exporters
        [int(first.arrival_ns[0])] * 2,
    )
    return [batches[0], garbage, *batches[1:]]


def _harvest(config, batches: list[DatagramBatch], inline: bool):
    table = compile_registry(config.registry, config.billing.timezone)
    pipeline = Pipeline(config, table, inline=inline)
    assert (pipeline._thread is None) == inline
    try:
        for batch in batches:
            pipeline.feed(batch)
        pipeline.finish_input()
        return pipeline.drain()
    finally:
        pipeline.close()


@pytest.mark.parametrize("protocol", ["ipfix", "v5"])
def test_inline_and_threaded_attribution_give_the_same_harvest(tmp_path, protocol):
    """Inline also means the in-place pass (accounting/attribution_inplace.py) for v5 and
    for the IPv4 millisecond-time IPFIX template, with what it leaves on the general path."""
    spec = TrafficSpec(seed=8, flows=6000)
    if protocol == "v5":
        scenario = v5_scenario(tmp_path, members=12, spec=spec)
    else:
        scenario = templated_scenario(tmp_path, protocol="ipfix", members=12, spec=spec)
    config = load_config(scenario.config)
    batches = _batches(scenario)
    inline = _harvest(config, batches, inline=True)
    threaded = _harvest(config, batches, inline=False)

    assert _as_dict(inline.usage) == _as_dict(threaded.usage)
    for name in ("counters", "dropped", "notes", "unknown_exporters", "seen"):
        assert getattr(inline, name) == getattr(threaded, name), name
    for name in ("datagrams", "flows", "first_flow_ms", "last_flow_ms"):
        assert getattr(inline, name) == getattr(threaded, name), name
    assert inline.unknown_exporters == {"192.0.2.200": 1, "192.0.2.201": 1}
    assert inline.dropped["unknown_exporter"] == 2

    # ... and both equal the ground truth, member by member.
    truth = scenario.truth.totals_by_owner()
    u = inline.usage
    for i in range(len(scenario.members)):
        for direction in (DIR_IN, DIR_OUT):
            mask = (u.owner == i) & (u.direction == direction)
            assert int(np.sum(u.bytes[mask])) == truth.get((i, direction), 0)


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
    reason="needs CPU affinity and two cores to tell the defaults apart",
)
@pytest.mark.parametrize("cores, inline", [({0}, True), ({0, 1}, False)])
def test_the_default_mode_follows_the_usable_cores(tmp_path, cores, inline):
    scenario = templated_scenario(
        tmp_path, protocol="ipfix", members=3, spec=TrafficSpec(seed=2, flows=50)
    )
    code = (
        "import os, sys\n"
        f"os.sched_setaffinity(0, {cores!r})\n"
        "from accounting.config import load_config\n"
        "from accounting.members import compile_registry\n"
        "from accounting.pipeline import Pipeline\n"
        "c = load_config(sys.argv[1])\n"
        "p = Pipeline(c, compile_registry(c.registry, c.billing.timezone))\n"
        "print(p.inline)\n"
        "p.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(scenario.config)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(inline)
