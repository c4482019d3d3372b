"""Live ingest: the highest datagram rate each receiver takes over loopback without loss.

Method (../shared/PERFORMANCE-ANCHORS.md): a C sender (benchmarks/sender.c, sendmmsg,
bursts every ~100 µs) pinned to core 0 loops over a deterministic stream (NetFlow v5 or
IPFIX, 30 records per datagram, 1,000 members / 10,000 prefixes), rewriting sequence
numbers so they stay consecutive; the receiver is pinned to core 1 with a 64 MiB socket
buffer (``net.core.rmem_max`` raised for the run, then restored). A step passes only if
all hold:

- the socket's drop counter (/proc/net/udp) is 0 and the kernel's UDP error counters
  (/proc/net/snmp RcvbufErrors, InErrors) did not move;
- the socket queue is empty within 1 s after the sender stops;
- the receiver's own totals equal what was sent (python-recv: datagrams and bytes;
  nfcapd: flows and bytes from ``nfdump -I``; nfacctd and egress: bytes per member and
  direction, internal and unattributed);
- the sender offered the rate (otherwise the step measured the sender, not the receiver).

Search, per receiver and protocol: after an unrecorded warm-up step, short probe steps
(3 s) rising by x1.5 from a start rate (a probe whose sender fell short far below its
ceiling is run again: a hiccup on the sender's core, not the bound), then bisection to
within 12 %; then, per repetition, steps of the full length (15 s): the first repetition
starts at 90 % of the probed rate and rises by 6 % (four times at most) while steps pass
(so that a probe failing on a hiccup in its first second does not cap the figure: with
two rises, stop 16's IPFIX run on disk passed every step at the cap, at 86 % CPU); the
others start at the first one's figure (a receiver with state that outlives restarts and
is sized by the traffic, egress's journal spares, first runs unrecorded full-length steps
at the starting rate, as a deployed one has run for a while: two, then more until one
passes, five at most); a failing step is followed by steps at 92, 85, 70, 55 and 40 % of
its rate until one passes (short probes overestimate receivers whose buffers hide a slow
backlog; the coarse descent keeps the full run within 45 minutes, so a figure may sit up
to 8 % below the highest rate that would pass). The figure is the median over
repetitions (min-max beside it). The machine's single-sender
ceiling is the sender at full speed into the plain Python receiver (5 s runs).

The run happens in a private network namespace (``unshare --net``) when possible, so the
kernel counters are this benchmark's alone.

Run: ``python -m benchmarks live [--quick] [--receivers nfcapd,nfacctd,...]``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import WORK_DIR, Stat, machine, wait_child, write_section
from benchmarks.corpora import LiveStream, live_stream
from benchmarks.peers import (
    ERROR_COUNTERS,
    RECEIVERS,
    Context,
    Receiver,
    load_average,
    python_speed,
    tree_cpu_seconds,
    udp_snmp,
    udp_sockets,
    wait_queue_empty,
)
from benchmarks.stream import send, sender_binary

RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
TARGET_RMEM = 64 * 1024 * 1024
PROTOCOL_LABEL = {"v5": "NetFlow v5", "ipfix": "IPFIX"}
WARM_STEPS = (2, 5)  # unrecorded full-length steps of a warm_state receiver: at least, at most
MAX_RISES = 4  # 6 % rises of the first full-length repetition while its steps pass


@dataclass
class Step:
    receiver: str
    protocol: str
    offered: float
    seconds: float
    sent: dict = field(default_factory=dict)
    drops: int = 0
    counters: dict = field(default_factory=dict)
    drained: float | None = None
    totals_ok: bool = False
    sender_bound: bool = False
    receiver_ok: bool = False  # every check on the receiver's side held
    passed: bool = False  # receiver_ok at the offered rate
    reasons: list[str] = field(default_factory=list)
    cpu: float = 0.0  # receiver CPU seconds per second of step
    peak_rss_mb: float = 0.0
    peak_private_mb: float = 0.0  # sampled RssAnon + RssFile of the receiver's processes
    peak_shared_mb: float = 0.0  # sampled RssShmem (egress: its mapped tmpfs journal)
    drop_span: tuple[float, float] | None = None  # first and last second with socket drops

    def line(self) -> str:
        rate = self.sent.get("rate", 0)
        verdict = "pass" if self.passed else ("sender-bound" if self.sender_bound else "FAIL")
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        offered = f"{self.offered:,.0f} dg/s" if self.offered else "full speed"
        return (
            f"{self.receiver} {self.protocol} offered {offered} for "
            f"{self.seconds:g} s, sent {rate:,.0f} dg/s: {verdict}{why}; receiver CPU "
            f"{100 * self.cpu:.0f} %, peak RSS {self.peak_rss_mb:.0f} MB"
            + f" (private {self.peak_private_mb:.0f} MB, shared {self.peak_shared_mb:.0f} MB)"
        )


class DropWatch:
    """Reads the socket's drop counter every 0.1 s during a step, to tell when drops
    happened (at the start, at a flush, all along); the harness pins itself to the
    sender's core, so this costs the receiver nothing."""

    def __init__(self, port: int, interval: float = 0.1) -> None:
        self.port = port
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DropWatch:
        self.began = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            drops = sum(d for _rx, d in udp_sockets(self.port))
            self.samples.append((time.monotonic() - self.began, drops))

    def span(self) -> tuple[float, float] | None:
        """Seconds after the start of sending of the first and the last sample in which the
        drop counter rose (None without drops)."""
        pairs = zip(self.samples[1:], self.samples[:-1], strict=True)
        rises = [t for (t, d), (_, before) in pairs if d > before]
        if self.samples and self.samples[0][1] > 0:
            rises.insert(0, self.samples[0][0])
        return (rises[0], rises[-1]) if rises else None


class OutOfTime(RuntimeError):
    """The run's time budget is spent."""


class Runner:
    def __init__(self, workdir: Path, log, deadline: float = math.inf) -> None:
        self.deadline = deadline  # time.monotonic() past which no step starts
        self.workdir = workdir
        self.port = random.randint(20_000, 30_000)
        self.steps: list[Step] = []
        self.log = log

    def step(
        self,
        receiver: Receiver,
        stream: LiveStream,
        rate: float,
        seconds: float,
        *,
        record: bool = True,
        drain_limit: float = 1.0,
    ) -> Step:
        """One run of ``seconds`` at ``rate``. ``drain_limit``: the longest the queue may
        take to empty after the sender stops (1 s by the method; shorter for probes, see
        :func:`search`)."""
        if time.monotonic() > self.deadline:
            raise OutOfTime("the time budget of the live benchmark is spent")
        self.port += 1
        port = self.port
        ctx = Context(
            stream.members,
            stream.stream.exporters,
            self.workdir / receiver.name,
            per_member=receiver.name not in ("nfcapd", "nfcapd-lz4"),
        )
        step = Step(receiver.name, stream.protocol, rate, seconds)
        before = udp_snmp()
        receiver.start(port, ctx, cpu=1)
        try:
            cpu0 = tree_cpu_seconds(receiver.process.pid)
            with DropWatch(port) as watch:
                step.sent = send(stream.stream, port, rate=rate, seconds=seconds, cpu=0)
                step.drained = wait_queue_empty(port, 1.0)
            step.drops = sum(d for _rx, d in udp_sockets(port))
            step.drop_span = watch.span()
            # CPU while sending and draining (not start-up or shutdown).
            step.cpu = (tree_cpu_seconds(receiver.process.pid) - cpu0) / max(
                step.sent["seconds"] + (step.drained or 1.0), 1e-9
            )
        finally:
            # A receiver that is behind may take long to flush: it has failed already.
            result = receiver.stop(30.0 if step.drained is not None else 10.0)
        after = udp_snmp()
        step.counters = {
            k: after.get(k, 0) - before.get(k, 0)
            for k in ERROR_COUNTERS
            if after.get(k, 0) != before.get(k, 0)
        }
        step.peak_rss_mb = result.usage.peak_rss_mb
        step.peak_private_mb = result.usage.peak_private_mb
        step.peak_shared_mb = result.usage.peak_shared_mb
        sent = step.sent
        if rate > 0 and sent["rate"] < 0.97 * rate:
            step.sender_bound = True
            step.reasons.append(f"the sender reached only {sent['rate']:,.0f} dg/s")
        if sent["errors"]:
            step.reasons.append(f"{sent['errors']} send errors (errno {sent['last_errno']})")
        if step.drops:
            where = ""
            if step.drop_span is not None:
                where = f", from {step.drop_span[0]:.1f} s to {step.drop_span[1]:.1f} s"
            step.reasons.append(f"{step.drops} socket drops{where}")
        if step.counters:
            step.reasons.append(f"kernel counters moved: {step.counters}")
        if step.drained is None:
            step.reasons.append("queue not empty 1 s after the sender stopped")
        elif step.drained > drain_limit:
            step.reasons.append(
                f"queue took {step.drained:.2f} s to empty (probe limit {drain_limit:.2f} s)"
            )
        step.reasons += result.notes
        step.totals_ok = self.check_totals(step, stream, result)
        step.receiver_ok = (
            not sent["errors"]
            and not step.drops
            and not step.counters
            and step.drained is not None
            and step.drained <= drain_limit
            and step.totals_ok
        )
        step.passed = step.receiver_ok and not step.sender_bound
        if record:
            self.steps.append(step)
        self.log(step.line() + ("" if record else " (warm-up, not counted)"))
        return step

    @staticmethod
    def check_totals(step: Step, stream: LiveStream, result) -> bool:
        sent = step.sent
        per_member, flows, total_bytes = stream.expected(sent)
        ok = True
        if result.datagrams is not None and result.datagrams != sent["datagrams"]:
            step.reasons.append(f"received {result.datagrams:,} of {sent['datagrams']:,} datagrams")
            ok = False
        if result.flows is not None and result.flows != flows:
            step.reasons.append(f"counted {result.flows:,} of {flows:,} flows")
            ok = False
        if result.bytes is not None:
            want = sent["bytes"] if result.datagrams is not None else total_bytes
            if result.bytes != want:
                step.reasons.append(f"counted {result.bytes:,} of {want:,} bytes")
                ok = False
        if result.per_member is not None and result.per_member != per_member:
            keys = set(per_member) | set(result.per_member)
            wrong = sum(result.per_member.get(k, 0) != per_member.get(k, 0) for k in keys)
            got, want = sum(result.per_member.values()), sum(per_member.values())
            step.reasons.append(
                f"{wrong} of {len(keys)} per-member totals differ ({got:,} of {want:,} bytes)"
            )
            ok = False
        if all(
            x is None for x in (result.datagrams, result.flows, result.bytes, result.per_member)
        ):
            step.reasons.append("the receiver reported nothing")
            ok = False
        return ok


def _round(rate: float) -> float:
    return float(max(1000, round(rate / 1000) * 1000))


@dataclass
class Search:
    receiver: str
    protocol: str
    figures: list[float]
    sender_bound: bool
    probe: float
    cpu: list[float]
    rss: list[float]
    skipped: str | None = None


def search(
    runner: Runner,
    receiver: Receiver,
    stream: LiveStream,
    *,
    ceiling: float,
    start: float,
    probe_seconds: float,
    step_seconds: float,
    reps: int,
    factor: float = 1.5,
    tolerance: float = 1.08,
) -> Search:
    """Probe (short steps rising by ``factor``, then bisection to ``tolerance``), then
    ``reps`` confirmations at full length. A first, unrecorded step at a low rate warms
    the receiver up (JIT caches, page cache).

    A short step can hide a receiver that is slowly falling behind (the socket buffer, or a
    peer's internal buffers, absorb the backlog), so probes may pass above the sustained
    rate; the full-length repetitions then step down until they pass.
    """
    runner.step(receiver, stream, 5_000, 1.0, record=False)

    def probe_step(rate: float) -> Step:
        return runner.step(receiver, stream, rate, probe_seconds)

    top = _round(0.95 * ceiling)
    last_pass, first_fail = None, None
    rate = min(_round(start), top)
    bound = False
    while True:
        s = probe_step(rate)
        if s.sender_bound and s.receiver_ok and rate < 0.9 * ceiling:
            # The sender fell short below its ceiling: a hiccup on its core (seen: 65,000
            # of 68,000 dg/s with a 310,000 ceiling; 219,784 of 230,000 with 263,000),
            # not the bound. Again.
            s = probe_step(rate)
        if s.sender_bound and not s.receiver_ok:
            # Loss below the offered rate: a failure at the rate the sender reached.
            first_fail = max(_round(s.sent["rate"]), (last_pass or 0) + 1000)
            break
        if s.sender_bound:
            # The receiver took everything the sender could send: that rate, not the
            # last probe below it, is what the receiver is known to sustain.
            last_pass = max(last_pass or 0, math.floor(s.sent["rate"] / 1000) * 1000)
            bound = True
            break
        if s.passed:
            last_pass = rate
            if rate >= top:
                bound = True
                break
            rate = min(_round(rate * factor), top)
        else:
            first_fail = rate
            break
    while last_pass is None and first_fail is not None and first_fail > 2000:
        rate = _round(first_fail / factor)
        s = probe_step(rate)
        if s.passed:
            last_pass = rate
        else:
            first_fail = rate
    while last_pass and first_fail and first_fail / last_pass > tolerance:
        mid = _round(math.sqrt(first_fail * last_pass))
        if mid in (last_pass, first_fail):
            break
        s = probe_step(mid)
        if s.passed:
            last_pass = mid
        else:
            first_fail = mid
    probe = last_pass or 0.0
    figures, cpu, rss = [], [], []
    # Short probes tend to overestimate (buffers hide a slow backlog): the first full-length
    # repetition starts a little below the probe and rises while it passes.
    start_rate = probe if bound else _round(0.9 * probe) if probe else 0.0
    if start_rate and receiver.warm_state:
        # A receiver whose state outlives restarts and sizes itself by the traffic (egress:
        # journal spares, grown at idle priority once the rate is known) runs at the rate
        # before the measured steps, as a deployed one has run for a while: the first run
        # finds spares sized by the 3 s probes and pays fresh pages for most of its
        # journal, which leaves the spare reserve little idle time to grow them, so warming
        # takes several runs (seen: 499,411, 108,283, then 14,852 datagrams lost at 187,000/s
        # on disk, with CPU falling from 98 to 82 % over the passing steps after). Two runs
        # at least, then more until one passes, five at most; none of them is recorded,
        # and the measured steps after them are judged as any other.
        least, most = WARM_STEPS
        for k in range(most):
            warm = runner.step(receiver, stream, start_rate, step_seconds, record=False)
            if k + 1 >= least and warm.receiver_ok:
                break
    for rep in range(reps):
        if not start_rate or (rep > 0 and not figures[0]):
            figures.append(0.0)
            continue
        try:
            best = confirm(
                runner, receiver, stream, start_rate, step_seconds, top, rep == 0 and not bound
            )
        except OutOfTime:
            if figures:
                break  # keep the repetitions done
            raise
        figures.append(min(best.offered, best.sent["rate"]) if best else 0.0)
        if best:
            cpu.append(best.cpu)
            rss.append(best.peak_private_mb)  # without shared memory (the journal's map)
            if rep == 0:
                start_rate = best.offered
    return Search(receiver.name, stream.protocol, figures, bound, probe, cpu, rss)


def confirm(
    runner: Runner,
    receiver: Receiver,
    stream: LiveStream,
    start_rate: float,
    step_seconds: float,
    top: float,
    rise: bool,
) -> Step | None:
    """One repetition of full-length steps: the highest passing one (None if none).
    Starts at ``start_rate``; rises by 6 % (four times at most) while steps pass when ``rise``;
    after a failure tries 92 %, 85 %, 70 %, 55 % and 40 % of ``start_rate`` (each
    full-length step costs 16-22 s: the full run has to fit in 45 minutes)."""
    best = None
    s = runner.step(receiver, stream, start_rate, step_seconds)
    if s.receiver_ok:
        best, rate = s, start_rate
        rises = MAX_RISES if rise else 0
        while rises and not s.sender_bound:
            rises -= 1
            nxt = _round(rate * 1.06)
            if nxt > top or nxt == rate:
                break
            s = runner.step(receiver, stream, nxt, step_seconds)
            if not s.receiver_ok:
                break
            best, rate = s, nxt
        return best
    for fraction in (0.92, 0.85, 0.7, 0.55, 0.4):
        s = runner.step(receiver, stream, _round(start_rate * fraction), step_seconds)
        if s.receiver_ok:
            return s
    return None


def ceiling_run(
    runner: Runner, stream: LiveStream, seconds: float, reps: int
) -> tuple[Stat | None, list[Step]]:
    """The sender at full speed into the plain Python receiver."""
    receiver = RECEIVERS["python-recv"]()
    steps = [runner.step(receiver, stream, 0, seconds) for _ in range(reps)]
    rates = [s.sent["rate"] for s in steps]
    return (Stat.of(rates) if rates else None), steps


# -- network namespace and rmem_max ---------------------------------------------------------


def _in_private_netns() -> bool:
    return os.environ.get("EGRESS_BENCH_NETNS") == "1"


def _reexec_in_netns(argv: list[str]) -> int | None:
    """Run this benchmark again inside ``unshare --net`` with rmem_max raised (root only).
    None when that is not possible (then the run happens here)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return None
    old = RMEM_MAX.read_text().strip()
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return None
    try:
        RMEM_MAX.write_text(str(max(int(old), TARGET_RMEM)))
        env = {**os.environ, "EGRESS_BENCH_NETNS": "1", "EGRESS_BENCH_RMEM_WAS": old}
        cmd = [sys.executable, "-m", "benchmarks", "live", *argv]
        script = 'ip link set lo up && exec "$@"'
        return wait_child(
            subprocess.Popen(["unshare", "--net", "--", "sh", "-c", script, "sh", *cmd], env=env)
        )
    finally:
        RMEM_MAX.write_text(old)


class _RmemRaised:
    """Raise net.core.rmem_max here when not done by the namespace wrapper."""

    def __enter__(self):
        self.old = None
        if os.geteuid() == 0 and not _in_private_netns():
            self.old = RMEM_MAX.read_text().strip()
            RMEM_MAX.write_text(str(max(int(self.old), TARGET_RMEM)))
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            RMEM_MAX.write_text(self.old)


# -- the benchmark ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks live", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="short steps, one repetition")
    parser.add_argument(
        "--receivers",
        default=None,
        help="receivers to measure; NAME:PROTOCOL limits one to a protocol "
        "(default nfcapd,nfacctd,egress,egress-tmpfs-journal,egress-w2:v5; quick: nfcapd,egress)",
    )
    parser.add_argument("--protocols", default=None, help="v5,ipfix (quick: v5)")
    parser.add_argument("--step-seconds", type=float, default=None, help="15 (quick: 1)")
    parser.add_argument("--probe-seconds", type=float, default=None, help="3 (quick: 1)")
    parser.add_argument("--reps", type=int, default=None, help="3 (quick: 1)")
    parser.add_argument("--start", type=float, default=30_000, help="first probe rate, dg/s")
    parser.add_argument("--no-netns", action="store_true", help="run in the host namespace")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="no step starts after this (default 32; quick: 2); what is left is reported as not run",
    )
    args = parser.parse_args(argv)
    if not args.no_netns and not _in_private_netns():
        status = _reexec_in_netns(argv)
        if status is not None:
            return status
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        # The harness (mostly idle; DropWatch reads /proc every 0.1 s) stays off the
        # receiver's core. Receivers and the sender are placed with taskset.
        os.sched_setaffinity(0, {0})
    quick = args.quick
    step_s = args.step_seconds or (1.0 if quick else 15.0)
    probe_s = args.probe_seconds or (1.0 if quick else 3.0)
    reps = args.reps or (1 if quick else 3)
    protocols = (args.protocols or ("v5" if quick else "v5,ipfix")).split(",")
    receivers = args.receivers or (
        "nfcapd,egress" if quick else "nfcapd,nfacctd,egress,egress-tmpfs-journal,egress-w2:v5"
    )
    wanted = [n.split(":") for n in receivers.split(",") if n]
    names = [w[0] for w in wanted]
    only = {w[0]: w[1] for w in wanted if len(w) > 1}
    sender_binary()
    workdir = WORK_DIR / "live-run"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    began = time.monotonic()
    load = load_average()
    speed = python_speed(1 if (os.cpu_count() or 1) > 1 else None)

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)

    budget = args.budget_minutes or (2.0 if quick else 32.0)
    runner = Runner(workdir, log, time.monotonic() + 60 * budget)
    ceilings: dict[str, Stat | None] = {}
    searches: list[Search] = []
    versions: dict[str, str] = {}
    rcvbuf_note = ""
    with _RmemRaised():
        rcvbuf_note = f"net.core.rmem_max {RMEM_MAX.read_text().strip()} during the run"
        streams: dict[str, LiveStream] = {}
        tops: dict[str, float] = {}
        for protocol in protocols:
            # Quick: a smaller member table (a smoke run, not the anchored method).
            streams[protocol] = (
                live_stream(protocol, 4_000, members=100)
                if quick
                else live_stream(protocol, 20_000)
            )
            try:
                ceiling, _steps = ceiling_run(runner, streams[protocol], min(step_s, 5.0), reps)
            except OutOfTime:
                ceiling = None
            ceilings[protocol] = ceiling
            tops[protocol] = ceiling.median if ceiling else 300_000
        # Receiver by receiver (both protocols each), in the order given: if the time
        # budget runs out, what is cut is the last receivers, not a whole protocol.
        for name in names:
            # One receiver for both protocols: what it keeps between steps (egress's journal
            # spares, on disk or tmpfs) carries over from one protocol to the next, as it
            # would in a deployed collector receiving both.
            receiver = RECEIVERS[name]()
            versions[receiver.name] = receiver.version
            unavailable = receiver.unavailable()
            try:
                for protocol in protocols:
                    if only.get(name, protocol) != protocol:
                        continue
                    if unavailable:
                        log(f"{name}: skipped: {unavailable}")
                        searches.append(Search(name, protocol, [], False, 0, [], [], unavailable))
                        continue
                    try:
                        found = search(
                            runner,
                            receiver,
                            streams[protocol],
                            ceiling=tops[protocol],
                            start=args.start,
                            probe_seconds=probe_s,
                            step_seconds=step_s,
                            reps=reps,
                            factor=2.0 if quick else 1.5,
                            tolerance=1.25 if quick else 1.12,
                        )
                    except OutOfTime as exc:
                        why = f"not run: {exc}"
                        log(f"{name}: {why}")
                        found = Search(name, protocol, [], False, 0, [], [], why)
                    except RuntimeError as exc:  # it did not start, or not in time
                        why = f"failed: {str(exc).splitlines()[0]}"
                        log(f"{name}: {why}")
                        found = Search(name, protocol, [], False, 0, [], [], why)
                    searches.append(found)
            finally:
                receiver.finish()
    elapsed = time.monotonic() - began
    versions["python-recv"] = RECEIVERS["python-recv"]().version
    body = render(
        argv,
        quick,
        protocols,
        names,
        ceilings,
        searches,
        versions,
        runner.steps,
        step_s,
        probe_s,
        reps,
        elapsed,
        f"{rcvbuf_note}, restored after; load average at the start: {load}; a Python loop of"
        f" 10^7 additions took {speed:.2f} s on the receiver's core (best of 3)",
    )
    write_section(f"live-{mode_name(quick, argv)}", body)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def mode_name(quick: bool, argv: list[str]) -> str:
    """quick, full, or custom when durations, repetitions or receivers were changed."""
    if any(
        a.startswith(("--step", "--probe", "--reps", "--start", "--recei", "--proto")) for a in argv
    ):
        return "custom"
    return "quick" if quick else "full"


def render(
    argv,
    quick,
    protocols,
    names,
    ceilings,
    searches,
    versions,
    steps,
    step_s,
    probe_s,
    reps,
    elapsed,
    rcvbuf_note,
) -> str:
    by = {(s.receiver, s.protocol): s for s in searches}

    def cell(s: Search | None) -> str:
        if s is None:
            return "–"
        if s.skipped:
            return "not run"
        if not s.figures or max(s.figures) == 0:
            return "no passing rate"
        st = Stat.of(s.figures)
        ge = "≥ " if s.sender_bound else ""
        return (
            f"{ge}{st.median:,.0f} ({st.low:,.0f}–{st.high:,.0f}, n={st.runs}) = "
            f"{st.median * 30 / 1e6:.2f} M flows/s"
        )

    def median(s: Search | None) -> float:
        return Stat.of(s.figures).median if s and s.figures and max(s.figures) else 0.0

    rows = []
    for name in names:
        row = [f"{name} ({versions.get(name, '')})"]
        for p in protocols:
            s = by.get((name, p))
            extra = ""
            if s and s.cpu:
                extra = (
                    f"; CPU {100 * Stat.of(s.cpu).median:.0f} %, RSS {Stat.of(s.rss).median:.0f} MB"
                )
            row.append(cell(s) + extra)
        rows.append("| " + " | ".join(row) + " |")
    ceiling_row = ["python-recv, sender at full speed (single-sender ceiling, 5 s runs)"]
    for p in protocols:
        c = ceilings.get(p)
        ceiling_row.append(
            f"≥ {c.median:,.0f} ({c.low:,.0f}–{c.high:,.0f}, n={c.runs}) = "
            f"{c.median * 30 / 1e6:.2f} M flows/s"
            if c
            else "–"
        )
    rows.append("| " + " | ".join(ceiling_row) + " |")
    ratio_lines = []
    for p in protocols:
        figs = {n: median(by.get((n, p))) for n in names}
        ours = [n for n in names if n.startswith("egress")]
        theirs = [n for n in names if not n.startswith("egress")]
        pairs = [(a, b) for a in ours for b in theirs]
        pairs += [(a, b) for i, a in enumerate(theirs) for b in theirs[i + 1 :]]
        pairs += [(a, "egress") for a in ours if a != "egress" and "egress" in ours]
        for a, b in pairs:
            if figs.get(a) and figs.get(b):
                ratio_lines.append(f"- {PROTOCOL_LABEL[p]}: {a} / {b} = {figs[a] / figs[b]:.2f}")
    skipped = [
        f"- {s.receiver} ({PROTOCOL_LABEL[s.protocol]}): {s.skipped}" for s in searches if s.skipped
    ]
    mode = mode_name(quick, argv)
    command = " ".join(["python -m benchmarks live", *(a for a in argv if a != "--no-netns")])
    header = " | ".join(["receiver", *(PROTOCOL_LABEL[p] for p in protocols)])
    step_lines = "\n".join(f"- {s.line()}" for s in steps)
    return f"""## Live ingest over loopback, highest zero-loss rate ({mode} run)

Command: `{command}` (as root; {elapsed / 60:.1f} min). Machine: {machine()}.
Sender: benchmarks/sender.c (sendmmsg, bursts every 100 µs) pinned to core 0; receiver
pinned to core 1; 64 MiB socket buffers ({rcvbuf_note}). Stream: one
router, 30 records per datagram (NetFlow v5: 1,464 B; IPFIX: one 11-field template,
53 B records, template every 100 messages), {"100 members / 1,000" if quick else "1,000 members / 10,000"} prefixes, looped
with consecutive sequence numbers. A step passes when socket drops are 0, the kernel's UDP
error counters did not move, the queue empties within 1 s and the receiver's totals equal
what was sent (see benchmarks/live.py). Probe steps {probe_s:g} s, then {reps}
repetition(s) of {step_s:g} s steps; figure = median (min–max, n) in datagrams/s.
nfacctd: print plugin, `aggregate: src_net, dst_net`, networks_file of the members'
prefixes, `print_history: 5m`, JSON output, `print_cache_entries: 32771`,
`plugin_pipe_size: 268435456`, `plugin_buffer_size: 65536`, `nfacctd_pipe_size` 64 MiB;
its core and plugin processes share core 1. nfcapd: `-t 300 -B 67108864`, no compression.
egress runs `egress collect` with its defaults (flush every 10 s, journal on disk) and is
read back with `egress report --format json`; a step starts when every worker logs that it
receives (journal recovered, kernels loaded). Its journal's spare segments are kept between
steps, and unrecorded full-length steps at the starting rate precede the measured ones (two,
then more until one passes, five at most): a deployed collector's spares hold 1.25 x a
flush interval's traffic (grown at idle priority once the rate is seen), while a brand-new
journal, or one whose spares were sized by 3 s probes, appends to fresh pages (~2.3 µs
more per datagram, measured on an AMD EPYC VM of this kind), which leaves little idle time
to grow them.
egress-tmpfs-journal is the same with `journal_dir` on tmpfs (/dev/shm here), where
deploy/egress.service puts it (/run/egress): no writeback, no eviction of idle spares by
DAMON-based reclaim where the host runs it (see docs/architecture.md, where the journal
lives). egress-w2 is
`workers = 2`, which needs both cores: it is not pinned, so it shares core 0 with the
sender. CPU is the receiver's process tree while sending (100 % = one core). RSS is the
peak private resident memory of the receiver's processes (RssAnon + RssFile, sampled every
0.2 s); the step lines also give wait4's peak RSS and the peak shared memory (RssShmem): on
tmpfs egress maps its journal's files and receives into them, pages tmpfs holds anyway.

| {header} |
|---|{"---|" * len(protocols)}
{chr(10).join(rows)}

Ratios (medians):
{chr(10).join(ratio_lines) or "- (fewer than two receivers measured)"}

{"Not run:" + chr(10) + chr(10).join(skipped) if skipped else ""}

<details><summary>Every step</summary>

{step_lines}

</details>
"""


if __name__ == "__main__":
    sys.exit(main())
