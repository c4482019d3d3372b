"""Billing benchmark: 1,000 members x 8,928 five-minute bins (a 31-day month).

    python -m benchmarks billing [--runs 5] [--mc-runs 3] [--directions max[,in,...]] [--quick]

Rewrites its RESULTS.md section. Prints, for each step, the median wall time over the runs
(and min/max), the median CPU time of the process (all threads: on an idle 2-core machine a parallel step's wall time
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
from dataclasses import dataclass
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
from benchmarks.common import proc_status_kb

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
        self.mib = proc_status_kb("VmHWM") / 1024 or float("nan")


def rss_mib() -> float:
    return proc_status_kb("VmRSS") / 1024 or float("nan")


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


@dataclass
class Row:
    """One timed step of one direction rule, for the RESULTS.md table."""

    direction: str
    label: str
    times: list[float]
    cpu: float
    peak: float
    target: str = ""
    detail: str = ""


def show(rows: list[Row], direction, label, times, peak, target="", detail="") -> Row:
    cpu = statistics.median(CPU) if CPU else float("nan")
    print(
        f"  {label:<46} median {statistics.median(times):8.3f} s  (min {min(times):.3f}, max "
        f"{max(times):.3f}, n={len(times)})  CPU {cpu:7.3f} s  peak RSS {peak:5.0f} MiB  "
        f"load {os.getloadavg()[0]:.1f}" + (f"\n    {detail}" if detail else ""),
        flush=True,
    )
    row = Row(direction, label, times, cpu, peak, target, detail)
    rows.append(row)
    return row


def write_results(rows: list[Row], args, header: list[str], minutes: float, load: str) -> None:
    """Rewrite the billing section of RESULTS.md with this run's figures."""
    from benchmarks.common import Stat, machine, write_section

    kind = "quick" if args.quick else "full"
    lines = [
        f"## Billing: allocation rules and Shapley, {args.members:,} members x {args.bins:,} "
        f"bins ({kind} run)",
        "",
        f"Command: `python -m benchmarks billing{' --quick' if args.quick else ''}` "
        f"({minutes:.1f} min). Machine: {machine()}; numba threads {numba.get_num_threads()}; "
        f"load average at the start: {load}.",
        "Input: a synthetic 31-day month (log-normal member sizes, median 2 Mb/s; diurnal "
        "profiles with random phase; per-bin noise; nightly backup bursts for 5 % of the "
        "members; 2 % silent). Contract: 1,000 Mb/s committed for 3,000 EUR + 4.50 EUR per "
        "Mb/s above, 5 % fee. Wall time is the median (min–max, n) after a warm-up run (JIT "
        "compilation excluded; numba caches machine code on disk); CPU is the process's CPU "
        "time, all threads (a parallel step's wall time approaches CPU / 2 on a free 2-core "
        "machine); peak RSS is the whole process (VmHWM).",
        "",
        *header,
        "",
        "| direction | step | wall | CPU | peak RSS | target |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        label = row.label + (f" ({row.detail})" if row.detail else "")
        lines.append(
            f"| `{row.direction}` | {label} | {Stat.of(row.times).fmt(unit=' s', digits=3)} "
            f"| {row.cpu:.3f} s | {row.peak:.0f} MiB | {row.target} |"
        )
    lines += [
        "",
        "How the Shapley kernels reach these times, and what was tried and dropped: "
        "docs/shapley.md.",
    ]
    write_section(f"billing-{kind}", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    from benchmarks.peers import load_average

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks billing", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--bins", type=int, default=8928)
    ap.add_argument("--runs", type=int, default=5, help="runs of each fast step")
    ap.add_argument("--mc-runs", type=int, default=3, help="runs of each Shapley step")
    ap.add_argument("--quick", action="store_true", help="skip the Shapley steps")
    ap.add_argument(
        "--directions",
        default="max",
        help="direction rules to run (default max, the default billing rule; e.g. max,in)",
    )
    args = ap.parse_args(argv)
    began, load = time.perf_counter(), load_average()

    print(
        f"egress billing benchmark: {args.members} members x {args.bins} bins; "
        f"numba {numba.__version__}, {numba.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {load}",
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
    rows: list[Row] = []
    header: list[str] = []
    for direction in args.directions.split(","):
        usage = prepare_usage(ids, inbound, outbound, Semantics(direction=direction))
        b = billed(usage)
        line = (
            f"Direction `{direction}`: billed 95th {float(b.mbps(BIN_SECONDS)):,.1f} Mb/s "
            f"({b.direction}), modelled invoice "
            f"{contract.invoice_cents(b.mbps(BIN_SECONDS)) / 100:,.2f} EUR."
        )
        header.append(line)
        print(f"\n{line}", flush=True)
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
            label = f'`allocate("{rule}")`' + (
                f", band +-{policy.band_bins} bins" if policy.band_bins else ""
            )
            show(rows, direction, label, times, peak, "< 1 s")
        policy = SharingPolicy(compare=("volume", "p95-own", "p95-bin"))
        times, _, peak = timed(
            lambda u=usage, p=policy: bill_month(u, contract, None, p), args.runs
        )
        show(rows, direction, "`bill_month`: 3 rules side by side, fee, usage hash", times, peak)
        times, _, peak = timed(lambda u=usage: usage_hash(u), args.runs)
        show(rows, direction, "of which the usage hash (blake2b)", times, peak)
        if args.quick:
            continue
        X = usage.game_matrix()
        start = time.perf_counter()
        shapley_monte_carlo(X[:, :50, :200], fixed_pairs=2)
        shapley_exact(X[:, :3, :200])
        print(f"  JIT warm-up (cached on disk): {time.perf_counter() - start:.1f} s", flush=True)
        times, r, peak = timed(lambda X=X: shapley_monte_carlo(X), args.mc_runs)
        show(
            rows,
            direction,
            "**Shapley Monte Carlo, default stopping rule**",
            times,
            peak,
            "< 60 s",
            f"{r.pairs:,} antithetic pairs, widest 95 % interval +-{100 * r.widest:.3f} % of "
            f"the share, converged {r.converged}",
        )
        order = np.argsort(-r.values)
        X20 = np.ascontiguousarray(X[:, order[:20], :])
        times, _, peak = timed(lambda X20=X20: shapley_exact(X20), args.mc_runs)
        show(rows, direction, "**Shapley exact, the 20 largest members**", times, peak, "< 60 s")
        del X
    write_results(rows, args, header, (time.perf_counter() - began) / 60, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
