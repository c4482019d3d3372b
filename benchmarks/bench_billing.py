"""Billing benchmark: 1,000 members x 8,928 five-minute bins (a 31-day month).

    python benchmarks/bench_billing.py [--runs 5] [--mc-runs 3] [--directions max,in] [--quick]

Prints, for each step, the median wall time over the runs (and min/max), the median CPU
time of the process (all threads: on an idle 2-core machine a parallel step's wall time
approaches CPU / 2, on a shared one it does not), the peak resident memory of the step
(Linux: VmHWM after resetting it through /proc/self/clear_refs) and the 1-minute load
average at the end of the step (this process counts for up to 2 of it).
Targets (issue 6): every rule but Shapley under 1 s; Shapley Monte Carlo to the default
stopping rule (widest 95% interval within 0.5% of the share) under 60 s; exact Shapley for
20 members under 60 s. JIT compilation is excluded (warm-up runs first; numba caches the
machine code on disk anyway) and reported separately.

The synthetic month: member sizes log-normal (median 2 Mb/s, sigma 1.2), a diurnal profile
per member (peak in the afternoon, random phase and depth, quieter weekends), per-bin
log-normal noise (sigma 0.35), nightly backup bursts for 5% of the members, outbound
10-60% of inbound with its own noise, and 2% of the members silent.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba

from accounting.billing import bill_month, usage_hash
from accounting.contract import ContractModel
from accounting.shapley import shapley_exact, shapley_monte_carlo
from accounting.sharing import (
    Semantics,
    SharingPolicy,
    allocate,
    billed,
    prepare_usage,
)

BIN_SECONDS = 300


def synthetic_month(members: int = 1000, bins: int = 8928, seed: int = 7):
    rng = np.random.default_rng(seed)
    t = np.arange(bins)
    hours = (t * BIN_SECONDS / 3600.0) % 24
    weekend = ((t * BIN_SECONDS) // 86400) % 7 >= 5
    size = rng.lognormal(np.log(2.0), 1.2, members)  # Mb/s
    phase = rng.normal(0, 1.5, members)
    depth = rng.uniform(0.4, 0.9, members)
    out_ratio = rng.uniform(0.1, 0.6, members)
    inbound = np.empty((members, bins), np.int64)
    outbound = np.empty((members, bins), np.int64)
    to_bytes = 1e6 * BIN_SECONDS / 8
    for i in range(members):
        h = (hours - phase[i]) % 24
        shape = (1 - depth[i]) + depth[i] * np.exp(-((h - 15.0) ** 2) / (2 * 3.5**2))
        rate = size[i] * shape * np.where(weekend, 0.6, 1.0) * rng.lognormal(0, 0.35, bins)
        if rng.random() < 0.05:
            rate = rate + ((hours >= 2) & (hours < 3) & (rng.random(bins) < 0.9)) * size[i] * 6
        inbound[i] = (rate * to_bytes).astype(np.int64)
        noise = rng.lognormal(0, 0.2, bins)
        outbound[i] = (rate * out_ratio[i] * noise * to_bytes).astype(np.int64)
    silent = rng.random(members) < 0.02
    inbound[silent] = 0
    outbound[silent] = 0
    return inbound, outbound


class Peak:
    """Peak resident memory of a block (Linux), in MiB."""

    def __enter__(self):
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc):
        self.mib = float("nan")
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.mib = int(line.split()[1]) / 1024
        except OSError:
            pass


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CPU = []  # CPU seconds (all threads) of the runs of the last timed() call


def timed(fn, runs):
    times, result, peak = [], None, 0.0
    CPU.clear()
    for _ in range(runs):
        with Peak() as p:
            start, cpu = time.perf_counter(), time.process_time()
            result = fn()
            times.append(time.perf_counter() - start)
            CPU.append(time.process_time() - cpu)
        peak = max(peak, p.mib)
    return times, result, peak


def show(label, times, peak, extra=""):
    med = statistics.median(times)
    cpu = statistics.median(CPU) if CPU else float("nan")
    print(
        f"{label:<44} median {med:8.3f} s  (min {min(times):.3f}, max {max(times):.3f}, "
        f"n={len(times)})  CPU {cpu:7.3f} s  peak RSS {peak:5.0f} MiB  "
        f"load {os.getloadavg()[0]:.1f}{extra}",
        flush=True,
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--bins", type=int, default=8928)
    ap.add_argument("--runs", type=int, default=5, help="runs of each fast step")
    ap.add_argument("--mc-runs", type=int, default=3, help="runs of each Shapley step")
    ap.add_argument("--quick", action="store_true", help="skip the Shapley steps")
    ap.add_argument(
        "--directions", default="max,in", help="direction rules to run (default max,in)"
    )
    args = ap.parse_args()

    print(
        f"egress billing benchmark: {args.members} members x {args.bins} bins; "
        f"numba {numba.__version__}, {numba.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    start = time.perf_counter()
    inbound, outbound = synthetic_month(args.members, args.bins)
    print(
        f"synthetic month: {time.perf_counter() - start:.1f} s; two int64 matrices of "
        f"{inbound.nbytes / 2**20:.0f} MiB each; process RSS {rss_mib():.0f} MiB",
        flush=True,
    )
    ids = [f"m{i:04d}" for i in range(args.members)]
    contract, problems = ContractModel.from_mapping(
        {"monthly_eur": 3000, "commit_mbps": 1000, "overage_eur_per_mbps": 4.5, "fee_percent": 5}
    )
    assert not problems
    amount = 1_000_000
    results = {}
    for direction in args.directions.split(","):
        usage = prepare_usage(ids, inbound, outbound, Semantics(direction=direction))
        b = billed(usage)
        print(
            f"\n[direction {direction}] billed 95th {float(b.mbps(BIN_SECONDS)):.1f} Mb/s "
            f"({b.direction}), invoice {contract.invoice_cents(b.mbps(BIN_SECONDS)) / 100:.2f} EUR",
            flush=True,
        )
        for rule, policy in (
            ("volume", SharingPolicy()),
            ("p95-own", SharingPolicy()),
            ("p95-bin", SharingPolicy()),
            ("p95-bin", SharingPolicy(band_bins=6)),
        ):
            allocate(rule, usage, amount, policy)  # warm-up
            times, _, peak = timed(
                lambda r=rule, p=policy, u=usage: allocate(r, u, amount, p), args.runs
            )
            label = f"{rule}" + (f" (band {policy.band_bins})" if policy.band_bins else "")
            results[(direction, label)] = show(f"  allocate {label}", times, peak)
        policy = SharingPolicy(compare=("volume", "p95-own", "p95-bin"))
        times, _, peak = timed(
            lambda u=usage, p=policy: bill_month(u, contract, None, p), args.runs
        )
        results[(direction, "bill")] = show(
            "  bill_month, 3 rules + hash (no Shapley)", times, peak
        )
        times, _, peak = timed(lambda u=usage: usage_hash(u), args.runs)
        show("    of which usage hash (blake2b)", times, peak)
        if args.quick:
            continue
        X = usage.game_matrix()
        start = time.perf_counter()
        shapley_monte_carlo(X[:, :50, :200], fixed_pairs=2)
        shapley_exact(X[:, :3, :200])
        print(f"  JIT warm-up (cached on disk): {time.perf_counter() - start:.1f} s", flush=True)
        times, r, peak = timed(lambda X=X: shapley_monte_carlo(X), args.mc_runs)
        results[(direction, "mc")] = show(
            "  Shapley Monte Carlo, default stopping rule",
            times,
            peak,
            f"\n    {r.pairs} pairs ({r.permutations} join orders), widest "
            f"+-{100 * r.widest:.3f}% of the share, converged {r.converged}, seed {r.seed}, "
            f"{1000 * statistics.median(times) / r.pairs:.2f} ms per pair",
        )
        order = np.argsort(-r.values)
        rel = r.halfwidth[order[:5]] / r.values[order[:5]]
        print(
            "    five largest shares: "
            + ", ".join(
                f"{100 * v / r.total:.2f}% +-{100 * h:.3f}%"
                for v, h in zip(r.values[order[:5]], rel, strict=True)
            ),
            flush=True,
        )
        X20 = np.ascontiguousarray(X[:, order[:20], :])
        times, _, peak = timed(lambda X20=X20: shapley_exact(X20), args.mc_runs)
        results[(direction, "exact20")] = show("  Shapley exact, 20 largest members", times, peak)
        del X
    print("\nsummary (median seconds):")
    for key, value in results.items():
        print(f"  {key[0]:>3} {key[1]:<24} {value:8.3f}")


if __name__ == "__main__":
    main()
