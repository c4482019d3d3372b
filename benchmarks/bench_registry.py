"""Member registry benchmark (issue 5): load and compile 10,000 members with IPv4 and IPv6
prefixes, and attribution speed with that table.

Run: ``python -m benchmarks registry [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import PeakMemory, Stat, machine, write_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks registry")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--members", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.members or (2_000 if args.quick else 10_000)
    repeat = 2 if args.quick else 5

    from accounting.attribution import attribute
    from accounting.config import load_config
    from accounting.members import compile_registry
    from collector.batch import FlowBatch
    from collector.synth.model import TrafficSpec, generate_flows, make_members
    from collector.synth.scenario import config_text

    members = make_members(n, ipv6=True)
    text = config_text(members, exporters=["192.0.2.1"])
    prefixes = sum(len(m.prefixes) for m in members)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "egress.toml"
        path.write_text(text, encoding="utf-8")
        loads, compiles = [], []
        with PeakMemory() as memory:
            for _ in range(repeat):
                begin = time.perf_counter()
                config = load_config(path)
                middle = time.perf_counter()
                table = compile_registry(config.registry, config.billing.timezone)
                end = time.perf_counter()
                loads.append(middle - begin)
                compiles.append(end - middle)
    total = Stat.of([a + b for a, b in zip(loads, compiles, strict=True)])

    flows = generate_flows(
        members, TrafficSpec(seed=3, flows=2_000_000, ipv6_share=0.3, duration_ms=3_600_000)
    )
    batch = FlowBatch.allocate(len(flows), ipv6=True)
    batch.ip_version[:] = flows.ip_version
    batch.source_ipv4_address[:] = flows.src4
    batch.destination_ipv4_address[:] = flows.dst4
    batch.source_ipv6_address[:] = flows.src6
    batch.destination_ipv6_address[:] = flows.dst6
    batch.octet_delta_count[:] = flows.octets
    batch.packet_delta_count[:] = flows.packets
    batch.sampling_interval[:] = 1
    batch.flow_start_milliseconds[:] = flows.start_ms
    batch.flow_end_milliseconds[:] = flows.end_ms
    notes: Counter = Counter()
    attribute(batch.take(np.arange(1000)), table, bin_ms=300_000, notes=notes)
    rates = []
    for _ in range(repeat):
        begin = time.perf_counter()
        attribute(batch, table, bin_ms=300_000, notes=notes)
        rates.append(len(batch) / (time.perf_counter() - begin))
    rate = Stat.of(rates)
    mode = "quick" if args.quick else "full"
    trie_mb = (
        table.v4_roots.nbytes
        + table.v4_chunks.nbytes
        + table.v6_roots.nbytes
        + table.v6_chunks.nbytes
    ) / 1e6
    body = f"""## Member registry: {n:,} members, {prefixes:,} IPv4 and IPv6 prefixes ({mode} run)

Command: `python -m benchmarks registry{" --quick" if args.quick else ""}`. Machine: {machine()}.

| measure | figure | target |
|---|---|---|
| load egress.toml (parse + validate) | {Stat.of(loads).fmt(1, 3, " s")} | |
| compile the tries | {Stat.of(compiles).fmt(1, 3, " s")} | |
| load + compile | {total.fmt(1, 3, " s")} | < 2 s |
| attribution with this table (30 % IPv6 flows, one core) | {rate.fmt(1e-6, 2, " M flows/s")} | within the foundation's targets |
| tries in memory | {trie_mb:.1f} MB | |
| peak anonymous memory while loading | {memory.peak_anon_kb / 1024:.0f} MB | |
"""
    write_section(f"registry-{mode}", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
