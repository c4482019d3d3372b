"""Any bytes given as a datagram yield records or counted errors, never an exception.

Two kinds of input: arbitrary byte strings (hypothesis), and real and generated NetFlow
v5 / v9 / IPFIX datagrams mutated (bit flips, byte overwrites with boundary values,
truncation, extension, splicing two datagrams, duplicated or reordered sets) and fed in
batches to one long-lived Decoder, so the template state, the pending buffer and the
sequence tracker are stressed too. A short run is part of the normal suite; the long one
(``-m slow``: at least 1,000,000 datagrams) prints its figures.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.batch import FlowBatch
from collector.datagrams import DatagramBatch
from collector.decode import Decoder
from collector.decode.templates import Limits
from collector.pcap import read_datagrams
from collector.synth.model import TrafficSpec, generate_flows, make_members
from collector.synth.netflow5 import V5Exporter, encode_v5


def seeds(tmp: Path) -> list[bytes]:
    """Datagrams to mutate: generated v5/v9/IPFIX, plus the shared corpus when present."""
    from conftest import CAPTURES

    from collector.synth.scenario_v9 import templated_scenario

    out: list[bytes] = []
    for proto in ("v9", "ipfix"):
        sc = templated_scenario(tmp / proto, protocol=proto, spec=TrafficSpec(seed=2, flows=2000))
        for b in read_datagrams(sc.capture):
            out += [bytes(b.payload(i)) for i in range(len(b))]
    flows = generate_flows(make_members(3, ipv6=False), TrafficSpec(flows=300, exporters=1))
    out += [d.payload for d in encode_v5(flows, [V5Exporter("192.0.2.5")])]
    if CAPTURES.is_dir():
        for path in sorted(CAPTURES.glob("*/*.pcap")) + sorted(CAPTURES.glob("*/*/*.pcap")):
            try:
                for b in read_datagrams(path):
                    out += [bytes(b.payload(i)) for i in range(len(b))]
            except Exception:  # a capture the pcap reader refuses is not a decoder input
                continue
    return out


INTERESTING = [0x00, 0x01, 0x02, 0x03, 0x04, 0x09, 0x0A, 0x7F, 0x80, 0xFE, 0xFF]


def mutate(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(0, 8))
        if op == 0 and b:  # bit flips
            for _ in range(int(rng.integers(1, 8))):
                i = int(rng.integers(0, len(b)))
                b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and b:  # boundary bytes, often in headers
            for _ in range(int(rng.integers(1, 6))):
                i = int(rng.integers(0, min(len(b), 64 if rng.random() < 0.7 else len(b))))
                b[i] = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
        elif op == 2 and b:  # truncate
            del b[int(rng.integers(0, len(b))) :]
        elif op == 3:  # extend with noise
            b += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif op == 4 and other:  # splice
            cut = int(rng.integers(0, len(b) + 1))
            b = b[:cut] + other[int(rng.integers(0, len(other))) :]
        elif op == 5 and len(b) > 24:  # duplicate a chunk (sets repeated)
            i = int(rng.integers(16, len(b)))
            j = min(len(b), i + int(rng.integers(4, 200)))
            b = b[:j] + b[i:j] + b[j:]
        elif op == 6 and len(b) >= 4:  # 16-bit length/id fields set to extremes
            i = int(rng.integers(0, len(b) - 1))
            b[i : i + 2] = [(0, 0), (0xFF, 0xFF), (0, 4), (1, 0), (0, 2)][int(rng.integers(0, 5))]
        elif op == 7 and len(b) > 2:  # keep the version, randomise the rest
            b[2:] = rng.integers(0, 256, len(b) - 2, dtype=np.uint8).tobytes()
    return bytes(b)


def run_fuzz(corpus: list[bytes], count: int, seed: int, batch_size: int = 512) -> dict:
    rng = np.random.default_rng(seed)
    decoder = Decoder(limits=Limits(templates_per_exporter=256, pending_bytes=1 << 20))
    dropped: Counter = Counter()
    flows = datagrams = 0
    sources = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    started = time.perf_counter()
    while datagrams < count:
        n = min(batch_size, count - datagrams)
        picks = rng.integers(0, len(corpus), n)
        others = rng.integers(0, len(corpus), n)
        payloads = [
            mutate(rng, corpus[p], corpus[o]) if rng.random() < 0.9 else corpus[p]
            for p, o in zip(picks.tolist(), others.tolist(), strict=True)
        ]
        arrival = (np.arange(n) + datagrams) * 1_000_000
        b = DatagramBatch.from_payloads(
            payloads,
            [sources[i % 3] for i in range(n)],
            arrival.tolist(),
        )
        r = decoder.decode(b)
        assert isinstance(r.flows, FlowBatch)
        assert r.datagrams == n
        if len(r.flows):
            assert r.flows.exporter_index.max() < len(r.exporters)
        dropped.update(r.dropped)
        flows += len(r.flows)
        datagrams += n
        if rng.random() < 0.01:
            decoder = Decoder(limits=decoder.state.limits)  # restart: state from scratch
    return {
        "datagrams": datagrams,
        "flows": flows,
        "seconds": time.perf_counter() - started,
        "dropped": dropped,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_arbitrary_bytes_never_raise(payloads):
    r = Decoder().decode(DatagramBatch.from_payloads(payloads))
    assert r.datagrams == len(payloads)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([b"\x00\x09", b"\x00\x0a", b"\x00\x05"]),
    st.lists(st.binary(min_size=0, max_size=200), min_size=1, max_size=6),
)
def test_version_prefixed_noise_never_raises(version, bodies):
    payloads = [version + body for body in bodies]
    r = Decoder().decode(DatagramBatch.from_payloads(payloads))
    assert r.datagrams == len(payloads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return seeds(tmp_path_factory.mktemp("fuzz"))


def test_mutated_datagrams_short(corpus):
    figures = run_fuzz(corpus, 20_000, seed=1)
    assert figures["datagrams"] == 20_000
    assert figures["flows"] > 0 and sum(figures["dropped"].values()) > 0


@pytest.mark.slow
def test_mutated_datagrams_long(corpus):
    count = int(os.environ.get("EGRESS_FUZZ_DATAGRAMS", "1000000"))
    figures = run_fuzz(corpus, count, seed=int(os.environ.get("EGRESS_FUZZ_SEED", "7")))
    rate = figures["datagrams"] / figures["seconds"]
    print(
        f"\nfuzz: {figures['datagrams']:,} datagrams ({len(corpus):,} seeds), "
        f"{figures['flows']:,} records decoded, {figures['seconds']:.1f} s ({rate:,.0f}/s); "
        f"drop reasons: {dict(figures['dropped'].most_common(12))}"
    )
    assert figures["datagrams"] >= count
