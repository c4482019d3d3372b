"""Accuracy: per-member totals of egress, nfdump (nfcapd) and pmacct (nfacctd) against the
ground truth, on the same replays.

Replays (see benchmarks/corpora.py and benchmarks/captures.py):
- synthetic NetFlow v5, v9 and IPFIX captures (sampling in the v5 header and in v9/IPFIX
  options data, uptime wrap, data before its template, flows spanning 5-minute bins,
  30 % IPv6 flows in v9/IPFIX);
- captures made by real exporters (softflowd; pmacctd with nfprobe) from a synthetic
  raw-traffic pcap.

Receivers, each on the same bytes:
- ``egress ingest`` (offline, the capture file) then ``egress report --format json``;
- ``egress collect`` (live: the capture's datagrams replayed over loopback by the sender);
- nfcapd, then ``nfdump`` aggregating by masked addresses mapped to members;
- nfacctd (print plugin, src_net/dst_net from a networks_file, renormalised sampling).

Every figure is an exact integer of bytes per (member, direction), internal and
unattributed; differences are shown. The quick mode fails (exit 1) when egress is not
exact, offline or live (unless the kernel counted a drop on the live socket).

Run: ``python -m benchmarks accuracy [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import WORK_DIR, machine, write_section
from benchmarks.corpora import MONTH, Replay, Totals, accuracy_replay
from benchmarks.peers import (
    RECEIVERS,
    Context,
    egress_command,
    load_average,
    report_totals,
    udp_sockets,
    wait_queue_empty,
)
from benchmarks.stream import send
from collector.synth.model import OWNER_INTERNAL, OWNER_UNATTRIBUTED

REPLAY_RATE = 5_000  # datagrams/s: well below every receiver's limit


@dataclass
class Outcome:
    tool: str
    totals: Totals | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kernel_drops: int = 0
    log_tail: str = ""  # the receiver's last log lines (printed when it is not exact)


def egress_offline(replay: Replay) -> Outcome:
    out = Outcome("egress ingest")
    begin = time.perf_counter()
    for suffix in ("", ".wal"):
        Path(str(replay.directory / "egress.duckdb") + suffix).unlink(missing_ok=True)
    ingest = subprocess.run(
        [*egress_command(), "ingest", "-c", str(replay.config), "-q", str(replay.capture)],
        capture_output=True,
        text=True,
        check=False,
    )
    if ingest.returncode != 0:
        out.error = f"egress ingest failed: {ingest.stderr.strip()[-300:]}"
        return out
    report = subprocess.run(
        [*egress_command(), "report", "-c", str(replay.config), "--month", MONTH, "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    out.seconds = time.perf_counter() - begin
    if report.returncode != 0:
        out.error = f"egress report failed: {report.stderr.strip()[-300:]}"
        return out
    out.totals = report_totals(json.loads(report.stdout), replay.members)
    return out


def live_replay(name: str, replay: Replay, workdir: Path, port: int) -> Outcome:
    """The capture's datagrams sent once over loopback to receiver ``name``."""
    receiver = RECEIVERS[name]()
    label = {"egress": "egress collect", "nfcapd": "nfcapd + nfdump"}.get(name, name)
    out = Outcome(label)
    why = receiver.unavailable()
    if why:
        out.error = why
        return out
    stream = replay.stream
    ctx = Context(replay.members, stream.exporters, workdir / f"{replay.name}-{name}")
    begin = time.perf_counter()
    try:
        receiver.start(port, ctx, cpu=1)
    except RuntimeError as exc:
        out.error = str(exc).splitlines()[0]
        return out
    try:
        sent = send(stream, port, rate=REPLAY_RATE, count=stream.datagrams, cpu=0)
        wait_queue_empty(port, 5.0)
        out.kernel_drops = sum(d for _rx, d in udp_sockets(port))
    finally:
        result = receiver.stop()
        log = getattr(getattr(receiver, "process", None), "log", None)
        if log is not None and Path(log).exists():
            out.log_tail = "\n".join(Path(log).read_text(errors="replace").splitlines()[-30:])
    out.seconds = time.perf_counter() - begin
    if sent["datagrams"] != stream.datagrams or sent["errors"]:
        out.notes.append(f"sent {sent['datagrams']} of {stream.datagrams} datagrams")
    if out.kernel_drops:
        out.notes.append(f"{out.kernel_drops} datagrams dropped by the kernel")
    out.notes += result.notes
    if result.per_member is None:
        out.error = "; ".join(result.notes) or "no per-member totals"
    out.totals = result.per_member
    return out


def label(key: tuple[int, int], replay: Replay) -> str:
    owner, direction = key
    if owner == OWNER_INTERNAL:
        return "internal"
    if owner == OWNER_UNATTRIBUTED:
        return "unattributed"
    if owner < 0 or owner >= len(replay.members):
        return f"unknown member {owner}"
    return f"{replay.members[owner].id} {('in', 'out')[direction]}"


def compare(truth: Totals, got: Totals) -> dict:
    keys = set(truth) | set(got)
    diffs = {k: got.get(k, 0) - truth.get(k, 0) for k in keys if got.get(k, 0) != truth.get(k, 0)}
    total_truth, total_got = sum(truth.values()), sum(got.values())
    return {
        "exact": not diffs,
        "cells": len(keys),
        "differing": len(diffs),
        "total_diff": total_got - total_truth,
        "abs_diff": sum(abs(v) for v in diffs.values()),
        "truth_total": total_truth,
        "diffs": diffs,
    }


def cell(outcome: Outcome, truth: Totals) -> str:
    if outcome.error:
        return f"not run: {outcome.error}"
    c = compare(truth, outcome.totals or {})
    if c["exact"]:
        text = "**exact**"
    else:
        pct = 100 * c["total_diff"] / c["truth_total"] if c["truth_total"] else 0.0
        moved = 100 * c["abs_diff"] / c["truth_total"] if c["truth_total"] else 0.0
        text = (
            f"{c['differing']}/{c['cells']} cells differ; total {c['total_diff']:+,} B "
            f"({pct:+.3f} %); Σ|diff| {c['abs_diff']:,} B ({moved:.3f} %)"
        )
    if outcome.notes:
        text += " — " + "; ".join(outcome.notes)
    return text


def details(replay: Replay, outcomes: list[Outcome], limit: int = 4) -> list[str]:
    lines = []
    for o in outcomes:
        if o.error or o.totals is None:
            continue
        c = compare(replay.truth, o.totals)
        if c["exact"]:
            continue
        worst = sorted(c["diffs"].items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:limit]
        parts = [
            f"{label(k, replay)}: truth {replay.truth.get(k, 0):,}, got {o.totals.get(k, 0):,} "
            f"({d:+,})"
            for k, d in worst
        ]
        lines.append(f"- {replay.name}, {o.tool}: " + "; ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks accuracy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--flows", type=int, default=None, help="synthetic flows per replay")
    parser.add_argument("--peers", default="nfcapd,nfacctd", help="peer receivers to run")
    args = parser.parse_args(argv)
    quick = args.quick
    flows = args.flows or (20_000 if quick else 300_000)
    conversations = 300 if quick else 3_000
    began = time.monotonic()
    load = load_average()
    from benchmarks.captures import exporter_available, exporter_replay

    replays: list[Replay] = []
    missing: list[str] = []
    for protocol in ("v5", "v9", "ipfix") if not quick else ("v5", "ipfix"):
        replays.append(accuracy_replay(protocol, flows))
    for exporter, versions in (
        (("softflowd", (5, 9, 10)), ("pmacctd", (5, 9, 10)))
        if not quick
        else (("softflowd", (10,)),)
    ):
        why = exporter_available(exporter)
        if why:
            missing.append(f"- {exporter}: {why}")
            continue
        for v in versions:
            try:
                replays.append(exporter_replay(exporter, v, conversations))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                missing.append(f"- {exporter} v{v}: {exc}")
    workdir = WORK_DIR / "accuracy-run"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    port = random.randint(30_000, 40_000)
    peers = [p for p in args.peers.split(",") if p]
    results: list[tuple[Replay, list[Outcome]]] = []
    failed = []
    for replay in replays:
        outcomes = [egress_offline(replay)]
        for name in ["egress", *peers]:
            port += 1
            outcomes.append(live_replay(name, replay, workdir, port))
        results.append((replay, outcomes))
        for o in outcomes:
            status = (
                "not run"
                if o.error
                else ("exact" if compare(replay.truth, o.totals or {})["exact"] else "differs")
            )
            print(f"{replay.name:16s} {o.tool:16s} {status} {'; '.join(o.notes)}", flush=True)
            if o.tool.startswith("egress") and status != "exact":
                if o.tool == "egress collect" and (o.kernel_drops or o.error):
                    continue  # kernel loss on a loaded machine, or collect not there
                failed.append(f"{replay.name}: {o.tool} {status}")
                if o.log_tail:  # what the collector said, to tell why
                    print(f"--- last lines of the {o.tool} log ---\n{o.log_tail}", flush=True)
    elapsed = time.monotonic() - began
    tools = [o.tool for o in results[0][1]] if results else []
    rows = []
    for replay, outcomes in results:
        rows.append(
            f"| {replay.name} | {sum(replay.truth.values()):,} | "
            + " | ".join(cell(o, replay.truth) for o in outcomes)
            + " |"
        )
    descriptions = "\n".join(f"- **{r.name}**: {r.description}" for r in replays)
    detail_lines = [line for replay, outcomes in results for line in details(replay, outcomes)]
    mode = "quick" if quick else "full"
    body = f"""## Accuracy: per-member totals against the ground truth ({mode} run)

Command: `python -m benchmarks accuracy{" --quick" if quick else ""}` ({elapsed:.0f} s). Machine: {machine()}.
Each cell compares a receiver's bytes per (member, direction), internal and unattributed
(one row each) with the generator's ground truth, as exact integers. egress ingest reads
the capture file; the others get its datagrams over loopback from the sender at
{REPLAY_RATE:,} datagrams/s (sequence numbers unchanged), each exporter from its own
127.0.0.N address. nfdump: `nfdump -A srcip4/N,dstip4/N` and `srcip6/M,dstip6/M`
(N, M = the longest member prefix), masked blocks mapped to members by longest-prefix
match. nfacctd: `aggregate: src_net, dst_net`, `networks_file` with every member prefix
(IPv6 /48s included: pmacct issue #577 reports IPv6 networks_file matching broken in
1.7.7; the IPv6 flows of the v9/IPFIX replays below show whether it bit here),
`nfacctd_renormalize: true`, no pro-rating (totals do not depend on bins).
Load average when the run started: {load}.

Replays:
{descriptions}

| replay | truth (bytes) | {" | ".join(tools)} |
|---|---:|{"---|" * len(tools)}
{chr(10).join(rows)}

Largest differences (truth, got, difference in bytes):
{chr(10).join(detail_lines) or "- none"}
{(chr(10) + "Not produced:" + chr(10) + chr(10).join(missing)) if missing else ""}
"""
    write_section(f"accuracy-{mode}", body)
    shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print("FAIL: egress is not exact: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
