"""Deterministic benchmark corpora: captures, their egress.toml and their ground truth.

Generated once into benchmarks/work/<name>/ and reused while the parameters match (a
``params.json`` beside them says what they are).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import WORK_DIR
from collector.synth.model import TrafficSpec, generate_flows, make_members
from collector.synth.netflow5 import V5Exporter, encode_v5
from collector.synth.pcapwriter import write_capture
from collector.synth.scenario import config_text
from collector.synth.truth import ground_truth


@dataclass(frozen=True)
class Corpus:
    directory: Path
    capture: Path
    config: Path
    truth: Path  # npz: owner, direction, bytes (per-bin truth summed by the loader)
    flows: int
    members: int
    prefixes: int

    def truth_totals(self) -> dict[tuple[int, int], int]:
        data = np.load(self.truth)
        out: dict[tuple[int, int], int] = {}
        for o, d, b in zip(
            data["owner"].tolist(), data["direction"].tolist(), data["bytes"].tolist(), strict=True
        ):
            out[(o, d)] = out.get((o, d), 0) + b
        return out


def v5_corpus(flows: int, members: int = 1000, extra_prefixes: int = 8, seed: int = 11) -> Corpus:
    """NetFlow v5 from two routers (one sampling 1:4), over one day, 30 records per datagram."""
    name = f"v5-{flows}-{members}-{extra_prefixes}-{seed}"
    directory = WORK_DIR / name
    params = {
        "flows": flows,
        "members": members,
        "extra": extra_prefixes,
        "seed": seed,
        "version": 3,
    }
    member_list = make_members(members, extra_v4_per_member=extra_prefixes, ipv6=False)
    corpus = Corpus(
        directory,
        directory / "exports.pcap",
        directory / "egress.toml",
        directory / "truth.npz",
        flows,
        members,
        sum(len(m.prefixes) for m in member_list),
    )
    marker = directory / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return corpus
    directory.mkdir(parents=True, exist_ok=True)
    spec = TrafficSpec(seed=seed, flows=flows, duration_ms=24 * 3600 * 1000, exporters=2)
    generated = generate_flows(member_list, spec)
    exporters = [
        V5Exporter("192.0.2.10", 1, spec.start_ms - 3_600_000),
        V5Exporter("192.0.2.11", 4, spec.start_ms + 7_200_000 - (1 << 32)),
    ]
    write_capture(corpus.capture, encode_v5(generated, exporters))
    corpus.config.write_text(
        config_text(member_list, "bench.duckdb", exporters=[e.address for e in exporters]),
        encoding="utf-8",
    )
    truth = ground_truth(generated, np.array([e.sampling_interval for e in exporters]), 300_000)
    np.savez(corpus.truth, owner=truth.owner, direction=truth.direction, bytes=truth.bytes)
    marker.write_text(json.dumps(params))
    return corpus
