"""Scaling curves of egress (offline, one core for the pipeline): throughput and peak
memory versus the number of prefixes and versus flows per datagram; ``egress report``
time and memory versus the number of members. Plots (PNG) into benchmarks/plots/.

- Prefixes (100 to 100,000): members each holding an equal share of /24s taken from
  130.0.0.0 upwards, one in ten of them a /27 carved out of another member's /24, so
  longest-prefix match matters; every flow's member host is drawn from a random prefix,
  so traffic touches the whole table. NetFlow v5, one router, 30 records per datagram.
- Flows per datagram: NetFlow v5 (1 to 30) and IPFIX (1 to 300, one 11-field template),
  1,000 members / 10,000 prefixes.
- Report: ``egress report --month 2026-11 --format json`` (a fresh process, as a user
  runs it) on a database holding a whole month of flows of 10 to 1,000 members, with the
  volume, p95-own and p95-bin rules side by side (Shapley is timed by the billing
  benchmark: its Monte Carlo takes 20-50 s a month and would hide the rest).

Each ingest is a fresh process on a fresh database (``python -m benchmarks.bench_v5
--child-ingest``), after one warm-up run. Every point's per-member totals are checked
against the ground truth.

Run: ``python -m benchmarks scaling [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from benchmarks.common import BENCH_DIR, WORK_DIR, Stat, machine, run_json, write_section
from benchmarks.corpora import (
    MONTH,
    TOTALS_ONLY,
    Totals,
    _done,
    _fresh,
    egress_config,
    load_members,
    normalise,
    save_members,
    set_report_rules,
    totals_from_arrays,
)
from benchmarks.peers import egress_command, load_average, report_totals
from collector.synth.model import (
    DIR_IN,
    DIR_NONE,
    DIR_OUT,
    OWNER_INTERNAL,
    OWNER_UNATTRIBUTED,
    SynthFlows,
    SynthMember,
    TrafficSpec,
    generate_flows,
    make_members,
)
from collector.synth.netflow5 import V5Exporter, encode_v5
from collector.synth.pcapwriter import Datagram, write_capture

PLOTS = BENCH_DIR / "plots"
EXPORTER = "192.0.2.10"


@dataclass(frozen=True)
class Case:
    directory: Path
    capture: Path
    config: Path
    members: list[SynthMember]
    truth: Totals
    flows: int


def _case(directory: Path, params: dict, build, compare: tuple[str, ...] = TOTALS_ONLY) -> Case:
    """Build a case once (``build(directory) -> (members, flows, datagrams, truth)``).
    ``compare``: the rules its reports compute (ingest points only read totals)."""
    if not _fresh(directory, params):
        directory.mkdir(parents=True, exist_ok=True)
        members, n_flows, datagrams, truth = build(directory)
        write_capture(directory / "exports.pcap", datagrams)
        (directory / "egress.toml").write_text(
            egress_config(members, directory / "egress.duckdb", [EXPORTER], compare=compare)
        )
        save_members(directory / "members.json", members)
        (directory / "truth.json").write_text(
            json.dumps([[o, d, b] for (o, d), b in truth.items()])
        )
        (directory / "flows.txt").write_text(str(n_flows))
        _done(directory, params)
    set_report_rules(directory / "egress.toml", compare)
    truth = {(o, d): b for o, d, b in json.loads((directory / "truth.json").read_text())}
    return Case(
        directory,
        directory / "exports.pcap",
        directory / "egress.toml",
        load_members(directory / "members.json"),
        truth,
        int((directory / "flows.txt").read_text()),
    )


# -- corpora ----------------------------------------------------------------------------------


def prefix_members(prefixes: int) -> tuple[list[SynthMember], np.ndarray, np.ndarray, np.ndarray]:
    """Members holding ``prefixes`` prefixes; (members, base address, length, owner) of each."""
    n_members = max(10, min(1000, prefixes // 10))
    n_carve = prefixes // 10
    n_24 = prefixes - n_carve
    base = np.zeros(prefixes, np.int64)
    length = np.zeros(prefixes, np.int64)
    owner = np.arange(prefixes, dtype=np.int64) % n_members
    base[:n_24] = (130 << 24) + (np.arange(n_24, dtype=np.int64) << 8)
    length[:n_24] = 24
    host24 = np.arange(n_carve, dtype=np.int64) * 7 % n_24  # distinct /24s get a carve-out
    host24 = np.unique(host24)
    n_carve = len(host24)
    base[n_24 : n_24 + n_carve] = base[host24] + 128
    length[n_24 : n_24 + n_carve] = 27
    owner[n_24 : n_24 + n_carve] = (owner[host24] + 1) % n_members
    keep = n_24 + n_carve
    base, length, owner = base[:keep], length[:keep], owner[:keep]
    per: list[list[str]] = [[] for _ in range(n_members)]
    for b, n, o in zip(base.tolist(), length.tolist(), owner.tolist(), strict=True):
        per[o].append(f"{b >> 24}.{(b >> 16) & 255}.{(b >> 8) & 255}.{b & 255}/{n}")
    members = [SynthMember(f"m{i:05d}", f"Membre {i}", tuple(p)) for i, p in enumerate(per)]
    return members, base, length, owner


def prefix_case(prefixes: int, flows: int, seed: int = 3) -> Case:
    directory = WORK_DIR / f"scaling-prefixes-{prefixes}-{flows}-{seed}"

    def build(_d: Path):
        members, base, length, owner = prefix_members(prefixes)
        rng = np.random.default_rng(seed)
        spec = TrafficSpec(seed=seed, flows=flows, duration_ms=6 * 3600 * 1000, exporters=1)
        pick = rng.integers(0, len(base), flows)
        host_off = np.where(
            length[pick] == 24, rng.integers(1, 128, flows), rng.integers(1, 31, flows)
        )
        local = (base[pick] + host_off).astype(np.uint32)
        local_owner = owner[pick]
        peer_pick = rng.integers(0, len(base), flows)
        peer = (base[peer_pick] + rng.integers(1, 31, flows)).astype(np.uint32)
        remote = rng.integers(11 << 24, 127 << 24, flows).astype(np.uint32)
        stray = ((192 << 24) | (168 << 16)) + rng.integers(1, 65535, flows)
        kind = rng.random(flows)
        upload = rng.random(flows) < 0.3
        internal, unatt = kind < 0.05, (kind >= 0.05) & (kind < 0.1)
        src = np.where(upload, local, remote)
        dst = np.where(upload, remote, local)
        src = np.where(internal, local, src)
        dst = np.where(internal, peer, dst)
        src = np.where(unatt, np.where(upload, stray, remote), src).astype(np.uint32)
        dst = np.where(unatt, np.where(upload, remote, stray), dst).astype(np.uint32)
        own = np.where(internal, OWNER_INTERNAL, np.where(unatt, OWNER_UNATTRIBUTED, local_owner))
        direction = np.where(upload, DIR_OUT, DIR_IN)
        direction = np.where(internal | unatt, DIR_NONE, direction)
        start = spec.start_ms + rng.integers(0, spec.duration_ms, flows)
        end = start + np.where(
            rng.random(flows) < 0.1,
            rng.integers(0, 1_800_000, flows),
            rng.integers(0, 60_000, flows),
        )
        octets = np.minimum(
            (rng.pareto(1.2, flows) * 2000 + 40).astype(np.uint64), np.uint64(2**32 - 1)
        )
        synth = SynthFlows(
            ip_version=np.full(flows, 4, np.uint8),
            src4=src,
            dst4=dst,
            src6=np.zeros((flows, 2), np.uint64),
            dst6=np.zeros((flows, 2), np.uint64),
            octets=octets,
            packets=np.maximum(octets // np.uint64(900), np.uint64(1)),
            start_ms=start.astype(np.int64),
            end_ms=end.astype(np.int64),
            exporter=np.zeros(flows, np.int32),
            owner=own.astype(np.int32),
            direction=direction.astype(np.int8),
            input_if=np.where(upload, 2, 1).astype(np.uint16),
            output_if=np.where(upload, 1, 2).astype(np.uint16),
        )
        datagrams = encode_v5(synth, [V5Exporter(EXPORTER, 1, spec.start_ms - 3_600_000)])
        truth = normalise(totals_from_arrays(own, direction, octets.astype(np.int64)))
        return members, flows, datagrams, truth

    return _case(directory, {"prefixes": prefixes, "flows": flows, "seed": seed, "v": 1}, build)


def _resplit_v5(datagrams: list[Datagram], k: int) -> list[Datagram]:
    """NetFlow v5 datagrams of 30 records cut into datagrams of ``k`` records."""
    out = []
    seq = 0
    for d in datagrams:
        p = d.payload
        count = (len(p) - 24) // 48
        for s in range(0, count, k):
            n = min(k, count - s)
            head = bytearray(p[:24])
            head[2:4] = n.to_bytes(2, "big")
            head[16:20] = (seq % (1 << 32)).to_bytes(4, "big")
            seq += n
            out.append(
                Datagram(d.time_ns, d.source, bytes(head) + p[24 + 48 * s : 24 + 48 * (s + n)])
            )
    return out


def per_datagram_case(
    protocol: str, k: int, flows: int, members: int = 1000, seed: int = 4
) -> Case:
    directory = WORK_DIR / f"scaling-fpd-{protocol}-{k}-{flows}-{members}-{seed}"

    def build(_d: Path):
        member_list = make_members(members, extra_v4_per_member=8, ipv6=False)
        spec = TrafficSpec(seed=seed, flows=flows, duration_ms=6 * 3600 * 1000, exporters=1)
        synth = generate_flows(member_list, spec)
        if protocol == "v5":
            datagrams = _resplit_v5(
                encode_v5(synth, [V5Exporter(EXPORTER, 1, spec.start_ms - 3_600_000)]), k
            )
        else:
            from collector.synth.ipfix import encode_ipfix
            from collector.synth.netflow9 import TemplatedExporter

            ex = TemplatedExporter(
                EXPORTER, domain=1, layout="a", time_mode="ms", template_every=100,
                records_per_datagram=k, destination_port=4739,
            )  # fmt: skip
            datagrams = encode_ipfix(synth, [ex])
        truth = normalise(
            totals_from_arrays(synth.owner, synth.direction, synth.octets.astype(np.int64))
        )
        return member_list, flows, datagrams, truth

    params = {"p": protocol, "k": k, "flows": flows, "members": members, "seed": seed, "v": 1}
    return _case(directory, params, build)


# The report curve times `egress report` with the three closed-form rules side by side;
# Shapley (Monte Carlo above 20 members, 20-50 s a month) is timed by the billing benchmark.
REPORT_RULES = ("volume", "p95-own", "p95-bin")


def month_case(members: int, flows: int, seed: int = 6) -> Case:
    directory = WORK_DIR / f"scaling-report-{members}-{flows}-{seed}"
    start = int(datetime(2026, 11, 1, tzinfo=ZoneInfo("Europe/Paris")).timestamp() * 1000)

    def build(_d: Path):
        member_list = make_members(members, ipv6=False)
        spec = TrafficSpec(
            seed=seed, flows=flows, start_ms=start + 60_000,
            duration_ms=29 * 86_400_000, exporters=1,
        )  # fmt: skip
        synth = generate_flows(member_list, spec)
        datagrams = encode_v5(synth, [V5Exporter(EXPORTER, 1, spec.start_ms - 3_600_000)])
        truth = normalise(
            totals_from_arrays(synth.owner, synth.direction, synth.octets.astype(np.int64))
        )
        return member_list, flows, datagrams, truth

    params = {"members": members, "flows": flows, "seed": seed, "v": 1}
    return _case(directory, params, build, compare=REPORT_RULES)


# -- measurements -----------------------------------------------------------------------------


def _fresh_db(case: Case) -> Path:
    db = case.directory / "egress.duckdb"
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return db


def _report_rusage(case: Case) -> tuple[dict, float, float]:
    """``egress report`` with its own peak RSS (wait4 on the child)."""
    cmd = [*egress_command(), "report", "-c", str(case.config), "--month", MONTH, "-f", "json"]
    begin = time.perf_counter()
    out_path = case.directory / "report.json"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - begin
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"egress report failed: {proc.stderr.read().decode()[-300:]}")
    return json.loads(out_path.read_text()), seconds, usage.ru_maxrss / 1024


CONFIG_BUDGET = 60.0  # seconds a configuration may take to load before a point is skipped


def config_load_seconds(case: Case, timeout: float = CONFIG_BUDGET) -> float | None:
    """Seconds to load and validate the case's egress.toml in a fresh process (None past
    ``timeout``): every egress command pays it once."""
    code = (
        "import sys, time; from accounting.config import load_config; "
        "t = time.perf_counter(); load_config(sys.argv[1]); print(time.perf_counter() - t)"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(case.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip().splitlines()[-1])


def ingest_point(case: Case, repeat: int, warm: bool) -> dict:
    runs = []
    exact = True
    for i in range(repeat + (1 if warm else 0)):
        db = _fresh_db(case)
        figures = run_json(
            [
                "-m",
                "benchmarks.bench_v5",
                "--child-ingest",
                str(case.capture),
                str(case.config),
                str(db),
            ]
        )
        if i == 0:
            data, _s, _rss = _report_rusage(case)
            exact = report_totals(data, case.members) == case.truth
        if not (warm and i == 0):
            runs.append(figures)
    return {
        "rate": Stat.of([r["flows"] / r["seconds"] for r in runs]),
        "anon": Stat.of([r["peak_anon_mb"] for r in runs]),
        "rss": Stat.of([r["peak_rss_mb"] for r in runs]),
        "exact": exact,
        "flows": case.flows,
    }


def report_point(case: Case, repeat: int) -> dict:
    db = _fresh_db(case)
    out = subprocess.run(
        [*egress_command(), "ingest", "-c", str(case.config), "-q", str(case.capture)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"egress ingest failed: {out.stderr[-300:]}")
    del db
    times, rss = [], []
    exact = True
    for i in range(repeat + 1):
        data, seconds, peak = _report_rusage(case)
        if i == 0:
            exact = report_totals(data, case.members) == case.truth
            continue  # warm-up: page cache
        times.append(seconds)
        rss.append(peak)
    return {"seconds": Stat.of(times), "rss": Stat.of(rss), "exact": exact}


# -- plots ------------------------------------------------------------------------------------


def plot(
    name: str,
    title: str,
    xlabel: str,
    series: dict,
    ylabel: str,
    rss: dict | None,
    scale: float = 1.0,
) -> str | None:
    """Write benchmarks/plots/NAME.png: medians with min-max bars (times ``scale``); peak
    memory on a second axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    PLOTS.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, points in series.items():
        xs = [p[0] for p in points]
        med = [p[1].median * scale for p in points]
        err = [
            [(p[1].median - p[1].low) * scale for p in points],
            [(p[1].high - p[1].median) * scale for p in points],
        ]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if rss:
        ax2 = ax.twinx()
        for label, points in rss.items():
            ax2.plot([p[0] for p in points], [p[1].median for p in points], ls="--", marker="x",
                     alpha=0.6, label=f"{label}: peak memory")  # fmt: skip
        ax2.set_ylabel("peak memory (MB)")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="best")
    fig.tight_layout()
    path = PLOTS / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return f"plots/{name}.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks scaling", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    repeat = 1 if quick else 3
    began = time.monotonic()
    load = load_average()
    lines_p, lines_f, lines_r = [], [], []
    failed = []
    # Prefixes.
    sizes = (100, 1_000) if quick else (100, 1_000, 10_000, 100_000)
    n_flows = 100_000 if quick else 1_000_000
    series_p, rss_p = [], []
    warm = True
    for p in sizes:
        case = prefix_case(p, n_flows)
        n_prefixes = sum(len(m.prefixes) for m in case.members)
        load = config_load_seconds(case)
        if load is None:
            print(f"prefixes {n_prefixes:,}: skipped, configuration load > {CONFIG_BUDGET:g} s")
            lines_p.append(
                f"| {n_prefixes:,} | {len(case.members):,} | skipped: loading egress.toml took "
                f"more than {CONFIG_BUDGET:g} s | | | | |"
            )
            continue
        point = ingest_point(case, repeat, warm=warm)
        warm = False
        print(f"prefixes {n_prefixes:,}: {point['rate'].fmt(1e-6, 2, ' M flows/s')}", flush=True)
        series_p.append((n_prefixes, point["rate"]))
        rss_p.append((n_prefixes, point["anon"]))
        lines_p.append(
            f"| {n_prefixes:,} | {len(case.members):,} | {point['rate'].fmt(1e-6, 2, ' M')} | "
            f"{point['anon'].fmt(1, 0, ' MB')} | {point['rss'].fmt(1, 0, ' MB')} | "
            f"{load:.2f} s | {'exact' if point['exact'] else 'MISMATCH'} |"
        )
        if not point["exact"]:
            failed.append(f"prefixes {p}")
    # Flows per datagram.
    ks = {"v5": (1, 30), "ipfix": (1, 300)} if quick else {
        "v5": (1, 10, 30), "ipfix": (1, 10, 30, 100, 300),
    }  # fmt: skip
    series_f: dict[str, list] = {}
    rss_f: dict[str, list] = {}
    cap = 100_000 if quick else 1_000_000
    per_k = 10_000 if quick else 100_000
    fpd_members = 100 if quick else 1000
    for protocol, values in ks.items():
        for k in values:
            case = per_datagram_case(protocol, k, min(cap, k * per_k), fpd_members)
            point = ingest_point(case, repeat, warm=False)
            print(
                f"{protocol} {k}/datagram: {point['rate'].fmt(1e-6, 2, ' M flows/s')}", flush=True
            )
            series_f.setdefault(protocol, []).append((k, point["rate"]))
            rss_f.setdefault(protocol, []).append((k, point["anon"]))
            lines_f.append(
                f"| {protocol} | {k} | {case.flows:,} | {point['rate'].fmt(1e-6, 2, ' M')} | "
                f"{point['anon'].fmt(1, 0, ' MB')} | {'exact' if point['exact'] else 'MISMATCH'} |"
            )
            if not point["exact"]:
                failed.append(f"{protocol} {k} per datagram")
    # Report time versus members.
    counts = (10, 1000) if quick else (10, 100, 1000)
    month_flows = 100_000 if quick else 1_000_000
    series_r, rss_r = [], []
    for m in counts:
        case = month_case(m, month_flows)
        point = report_point(case, repeat)
        print(f"report, {m} members: {point['seconds'].fmt(1, 2, ' s')}", flush=True)
        series_r.append((m, point["seconds"]))
        rss_r.append((m, point["rss"]))
        lines_r.append(
            f"| {m:,} | {point['seconds'].fmt(1, 2, ' s')} | {point['rss'].fmt(1, 0, ' MB')} | "
            f"{'exact' if point['exact'] else 'MISMATCH'} |"
        )
        if not point["exact"]:
            failed.append(f"report {m} members")
    mode = "quick" if quick else "full"
    pngs = [
        plot(f"scaling-prefixes-{mode}", "egress ingest vs prefixes (NetFlow v5, one core)",
             "prefixes", {"flows/s": series_p}, "M flows/s", {"RssAnon": rss_p}, 1e-6),
        plot(f"scaling-flows-per-datagram-{mode}", "egress ingest vs flows per datagram",
             "flows per datagram", series_f, "M flows/s", None, 1e-6),
        plot(f"scaling-report-{mode}", "egress report (one month) vs members", "members",
             {"wall time": series_r}, "seconds", {"report": rss_r}),
    ]  # fmt: skip
    images = "\n".join(f"![{p}]({p})" for p in pngs if p) or (
        "(matplotlib is not installed: no plots; `pip install matplotlib`)"
    )
    elapsed = time.monotonic() - began
    body = f"""## Scaling curves, egress offline ({mode} run)

Command: `python -m benchmarks scaling{" --quick" if quick else ""}` ({elapsed / 60:.1f} min; load average
at the start {load}). Machine: {machine()}.
Ingest figures: flows/s of the whole offline path (pcap on disk to committed DuckDB rows,
`accounting.ingest.ingest_file` in a fresh process on a fresh database), median (min–max,
n runs); peak memory is the process's anonymous resident memory (RssAnon) and VmHWM.
Per-member totals of every point are checked against the ground truth.

### Throughput versus prefixes ({n_flows:,} NetFlow v5 flows, 30 per datagram)

Config load: one fresh process loading and validating egress.toml (every egress command
pays it; not part of the flows/s figure).

| prefixes | members | flows/s | peak RssAnon | peak VmHWM | config load | totals |
|---:|---:|---|---|---|---:|---|
{chr(10).join(lines_p)}

### Throughput versus flows per datagram ({fpd_members:,} members, {fpd_members * 10:,} prefixes)

| protocol | flows per datagram | flows | flows/s | peak RssAnon | totals |
|---|---:|---:|---|---|---|
{chr(10).join(lines_f)}

### `egress report --month {MONTH} --format json` versus members ({month_flows:,} flows over the month)

Wall time of the process as a user runs it (Python start-up and imports included), after
one warm-up run; peak RSS from wait4. The report computes the volume, p95-own and p95-bin
rules side by side (`[sharing] compare`); egress's default adds Shapley, whose Monte Carlo
is timed in the billing section (1,000 members x 8,928 bins).

| members | wall time | peak RSS | totals |
|---:|---|---|---|
{chr(10).join(lines_r)}

Workers (1, 2): measured live (`egress collect`, `workers = N`) in the live section.

{images}
"""
    write_section(f"scaling-{mode}", body)
    if failed:
        print("FAIL: egress totals differ from the truth: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
