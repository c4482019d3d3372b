"""Receivers of the side-by-side benchmarks, one interface for all of them.

Each receiver is started on a loopback port (pinned to a core), fed by the sender, then
stopped; it gives back what it counted: flows and bytes, and per-member totals
(in = towards a member, out = from a member; internal and unattributed as one row each)
where it can say them.

- ``python-recv``: benchmarks/recv.py, a plain ``recv_into`` loop (datagrams, bytes).
- ``nfcapd``: nfdump's collector, storing every flow (``nfcapd -w DIR -b 127.0.0.1 -p
  PORT -t 300 -I bench -B 64MiB``); totals from ``nfdump -R DIR -I``; per-member totals
  from ``nfdump -A srcip4/N,dstip4/N`` (N = the longest member IPv4 prefix) and
  ``-A srcip6/M,dstip6/M`` on IPv6 flows, each masked block then mapped to its member by
  longest-prefix match (exact, since no member prefix is longer than the mask).
- ``nfacctd``: pmacct's collector with its print plugin, ``aggregate: src_net, dst_net``
  from a ``networks_file`` of the members' prefixes, 5-minute history, JSON output,
  sampling renormalised: the functional equivalent of per-member accounting.
- ``egress``: ``egress collect --config CFG`` as a subprocess; per-member totals from
  ``egress report --month 2026-11 --format json`` once it has stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import BENCH_DIR, proc_status_kbs
from benchmarks.corpora import (
    MONTH,
    MemberIndex,
    Totals,
    egress_config,
    networks_file,
    normalise,
)
from collector.synth.model import DIR_NONE, OWNER_INTERNAL, OWNER_UNATTRIBUTED, SynthMember

RCVBUF = 64 * 1024 * 1024


# -- kernel counters ---------------------------------------------------------------------


def udp_sockets(port: int) -> list[tuple[int, int]]:
    """(rx_queue bytes, drops) of every UDP socket bound to ``port`` (IPv4 and IPv6)."""
    out = []
    suffix = f":{port:04X}"
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 12 and f[1].endswith(suffix):
                rx = int(f[4].split(":")[1], 16)
                out.append((rx, int(f[-1])))
    return out


def udp_snmp() -> dict[str, int]:
    """The kernel's UDP counters (/proc/net/snmp and snmp6), by name."""
    out: dict[str, int] = {}
    lines = Path("/proc/net/snmp").read_text().splitlines()
    for head, values in itertools.pairwise(lines):
        if head.startswith("Udp:") and values.startswith("Udp:"):
            names, nums = head.split()[1:], values.split()[1:]
            if names[0] == "InDatagrams":
                out.update({f"Udp{n}": int(v) for n, v in zip(names, nums, strict=True)})
    try:
        for line in Path("/proc/net/snmp6").read_text().splitlines():
            k, v = line.split()
            if k.startswith("Udp6"):
                out[k] = int(v)
    except OSError:
        pass
    return out


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (other work on the machine skews timings)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def python_speed(cpu: int | None = 1) -> float:
    """Seconds a plain Python loop of 10**7 additions takes on core ``cpu`` (best of 3),
    measured in a child process: VMs of the same kind ran Python code 2-3 times faster or
    slower from one day to the next (AMD EPYC against Intel Xeon), so a run's figures
    carry this beside them."""
    code = (
        "import time\n"
        "best = 1e9\n"
        "for _ in range(3):\n"
        "    t = time.perf_counter(); s = 0\n"
        "    for i in range(10**7): s += i\n"
        "    best = min(best, time.perf_counter() - t)\n"
        "print(best)\n"
    )
    out = subprocess.run(
        pinned([sys.executable, "-c", code], cpu), capture_output=True, text=True, check=True
    )
    return float(out.stdout)


ERROR_COUNTERS = ("UdpRcvbufErrors", "UdpInErrors", "Udp6RcvbufErrors", "Udp6InErrors")


def wait_for_socket(port: int, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not udp_sockets(port):
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with status {proc.returncode} before listening")
        if time.monotonic() > end:
            raise RuntimeError(f"no socket on port {port} after {timeout:.0f} s")
        time.sleep(0.02)


def wait_queue_empty(port: int, timeout: float = 1.0) -> float | None:
    """Seconds until the receiver's socket queue is empty, or None past ``timeout``."""
    begin = time.monotonic()
    while True:
        if all(rx == 0 for rx, _ in udp_sockets(port)):
            return time.monotonic() - begin
        if time.monotonic() - begin > timeout:
            return None
        time.sleep(0.01)


# -- processes ---------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    total = 0.0
    for pid in cpu:
        p = pid
        while p > 1 and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += cpu[pid]
    return total


@dataclass
class Usage:
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0  # wait4's ru_maxrss: shared pages count too
    # Sampled every 0.2 s over the process tree: resident private memory (RssAnon +
    # RssFile, summed) and shared memory (RssShmem: egress's mapped tmpfs journal, which
    # tmpfs holds anyway; nfacctd's plugin pipe, counted once per process mapping it).
    peak_private_mb: float = 0.0
    peak_shared_mb: float = 0.0


MEMORY_FIELDS = ("RssAnon", "RssFile", "RssShmem")


class _MemorySampler:
    """Peaks of private and shared resident memory of a process and its descendants."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.private_kb = self.shared_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            rows = [proc_status_kbs(MEMORY_FIELDS, p) for p in _tree(self.pid)]
            self.private_kb = max(self.private_kb, sum(r[0] + r[1] for r in rows))
            self.shared_kb = max(self.shared_kb, sum(r[2] for r in rows))

    def stop(self) -> tuple[float, float]:
        """(peak private MB, peak shared MB)."""
        self._stop.set()
        self._thread.join()
        return self.private_kb / 1024, self.shared_kb / 1024


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux: /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def pinned(cmd: list[str], cpu: int | str | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


class Process:
    """A child process in its own process group (so everything it starts can be stopped
    with it), whose CPU time and peak RSS (its own and its waited children's) are read from
    wait4() when it ends."""

    def __init__(self, cmd: list[str], log: Path, cpu: int | str | None, **kwargs) -> None:
        self.log = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            pinned(cmd, cpu),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        self.pid = self.proc.pid
        self.killed = False
        self._memory = _MemorySampler(self.pid)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> Usage:
        """Signal the process, wait up to ``timeout`` s, then kill its whole group."""
        usage = Usage()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        end = time.monotonic() + timeout
        while True:
            try:
                pid, _status, rusage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                break
            if pid == self.pid:
                usage = Usage(rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024)
                break
            if time.monotonic() > end:
                self.killed = True
                self._signal_group(signal.SIGKILL)
                _pid, _status, rusage = os.wait4(self.pid, 0)
                usage = Usage(rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024)
                break
            time.sleep(0.02)
        self.proc.returncode = 0
        self._signal_group(signal.SIGKILL)  # whatever it left behind in its group
        self._log.close()
        usage.peak_private_mb, usage.peak_shared_mb = self._memory.stop()
        return usage

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()
        self._memory.stop()


# -- receivers ----------------------------------------------------------------------------


@dataclass
class Context:
    """What a receiver needs to know about the traffic it will get."""

    members: list[SynthMember]
    exporters: tuple[str, ...]  # loopback source addresses of the sender
    workdir: Path
    per_member: bool = True  # compute per-member totals (costly for nfcapd at high volume)
    index: MemberIndex | None = None

    def member_index(self) -> MemberIndex:
        if self.index is None:
            self.index = MemberIndex(self.members)
        return self.index


@dataclass
class Result:
    datagrams: int | None = None
    flows: int | None = None
    bytes: int | None = None
    per_member: Totals | None = None
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)


class Receiver:
    name = "?"
    version = ""
    ready_timeout = 20.0
    stop_signal = signal.SIGTERM
    cpus: str | None = None  # taskset list overriding the caller's core
    # State kept between steps and sized by the traffic (see live.search): warm it first.
    warm_state = False

    def ready(self) -> bool:
        """Beyond a bound socket: is the receiver ready to count (checked until true)?"""
        return True

    def finish(self) -> None:
        """After the last step: remove what the steps kept outside their work folder."""

    def unavailable(self) -> str | None:
        """None when the receiver can run here, else why not."""
        return None

    def command(self, port: int, ctx: Context) -> list[str]:
        raise NotImplementedError

    def start(self, port: int, ctx: Context, cpu: int | str | None = 1) -> None:
        """Start on ``cpu`` (a core number or taskset list), or on the receiver's own
        ``cpus`` when it sets them."""
        cpu = self.cpus if self.cpus is not None else cpu
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        self.ctx = ctx
        self.port = port
        self.process = Process(self.command(port, ctx), ctx.workdir / f"{self.name}.log", cpu)
        try:
            wait_for_socket(port, self.process.proc, self.ready_timeout)
            end = time.monotonic() + self.ready_timeout
            while not self.ready():
                if time.monotonic() > end or self.process.proc.poll() is not None:
                    raise RuntimeError("not ready")
                time.sleep(0.05)
        except RuntimeError as exc:
            self.process.kill()
            tail = self.process.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name}: {exc}\n{tail}") from exc

    def stop(self, timeout: float = 30.0) -> Result:
        usage = self.process.stop(self.stop_signal, timeout)
        result = self.collect()
        result.usage = usage
        if self.process.killed:
            result.notes.append(f"did not stop within {timeout:g} s: killed")
        return result

    def collect(self) -> Result:
        raise NotImplementedError


class PythonRecv(Receiver):
    name = "python-recv"

    def __init__(self) -> None:
        import platform

        self.version = f"Python {platform.python_version()}"

    def command(self, port: int, ctx: Context) -> list[str]:
        return [sys.executable, str(BENCH_DIR / "recv.py"), str(port)]

    def collect(self) -> Result:
        lines = self.process.log.read_text().strip().splitlines()
        data = json.loads(lines[-1])
        return Result(datagrams=data["datagrams"], bytes=data["bytes"])


def _tool_version(cmd: list[str], pick: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in (out.stdout + out.stderr).splitlines():
        if pick in line:
            return line.strip()
    return ""


class Nfcapd(Receiver):
    name = "nfcapd"

    def __init__(self, compress: str | None = None) -> None:
        self.compress = compress  # None, "-y" (LZ4) or "-z" (LZO)
        if compress:
            self.name = {"-y": "nfcapd-lz4", "-z": "nfcapd-lzo"}[compress]
        v = _tool_version(["nfcapd", "-V"], "Version")
        self.version = "nfdump nfcapd " + v.split("Version:")[-1].strip() if v else "nfcapd"

    def unavailable(self) -> str | None:
        for tool in ("nfcapd", "nfdump"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (apt-get install nfdump)"
        return None

    def command(self, port: int, ctx: Context) -> list[str]:
        self.flowdir = ctx.workdir / "nfcapd"
        if self.flowdir.exists():
            shutil.rmtree(self.flowdir)
        self.flowdir.mkdir(parents=True)
        cmd = ["nfcapd", "-w", str(self.flowdir), "-b", "127.0.0.1", "-p", str(port)]
        cmd += ["-t", "300", "-I", "bench", "-B", str(RCVBUF)]
        return cmd + ([self.compress] if self.compress else [])

    def collect(self) -> Result:
        out = subprocess.run(
            ["nfdump", "-R", str(self.flowdir), "-I"], capture_output=True, text=True, check=True
        )
        stat = {}
        for line in out.stdout.splitlines():
            k, _, v = line.partition(":")
            if v.strip().isdigit():
                stat[k.strip()] = int(v)
        result = Result(flows=stat.get("Flows", 0), bytes=stat.get("Bytes", 0))
        if stat.get("Sequence failures"):
            result.notes.append(f"sequence failures: {stat['Sequence failures']}")
        if self.ctx.per_member:
            result.per_member = self.per_member()
        return result

    def per_member(self) -> Totals:
        index = self.ctx.member_index()
        totals: Totals = {}
        for family, mask in (("ipv4", index.max_len[4]), ("ipv6", index.max_len[6])):
            if not mask:
                continue
            v = family[-1]
            agg = f"srcip{v}/{mask},dstip{v}/{mask}"
            out = subprocess.run(
                [
                    *("nfdump", "-R", str(self.flowdir), "-q", "-N", "-6", "-A", agg),
                    *("-o", "fmt:%sa %da %byt", family),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            for line in out.stdout.splitlines():
                f = line.split()
                if len(f) != 3 or not f[2].isdigit():
                    continue
                key = index.classify(f[0], f[1])
                totals[key] = totals.get(key, 0) + int(f[2])
        return normalise(totals)


class Nfacctd(Receiver):
    name = "nfacctd"
    stop_signal = signal.SIGINT  # the print plugin purges its cache on the way out

    def __init__(self, ipv6_networks: bool = True, pro_rating: bool = False) -> None:
        self.ipv6_networks = ipv6_networks
        self.pro_rating = pro_rating
        v = _tool_version(["nfacctd", "-V"], "nfacctd")
        self.version = v.replace("NetFlow Accounting Daemon, ", "pmacct ") if v else "nfacctd"

    def unavailable(self) -> str | None:
        if shutil.which("nfacctd") is None:
            return "nfacctd is not installed (apt-get install pmacct)"
        return None

    def config_text(self, port: int, ctx: Context) -> str:
        d = ctx.workdir
        networks_file(d / "networks.lst", ctx.members, ipv6=self.ipv6_networks)
        lines = [
            "daemonize: false",
            f"logfile: {d / 'nfacctd-daemon.log'}",
            "nfacctd_ip: 127.0.0.1",
            f"nfacctd_port: {port}",
            f"nfacctd_pipe_size: {RCVBUF}",
            "nfacctd_renormalize: true",
            "nfacctd_net: file",
            f"networks_file: {d / 'networks.lst'}",
            "plugins: print[m]",
            "aggregate[m]: src_net, dst_net",
            "print_history[m]: 5m",
            "print_history_roundoff[m]: m",
            "print_refresh_time[m]: 3600",
            "print_output[m]: json",
            f"print_output_file[m]: {d / 'nfacctd.json'}",
            "print_output_file_append[m]: true",
            "print_cache_entries[m]: 32771",
            # pmacct's advice for high rates: a large buffer between core and plugin.
            "plugin_pipe_size[m]: 268435456",
            "plugin_buffer_size[m]: 65536",
        ]
        if self.pro_rating:
            lines.append("nfacctd_pro_rating: true")
        return "\n".join(lines) + "\n"

    def ready(self) -> bool:
        # The print plugin (a second process) has loaded its networks map.
        log = self.ctx.workdir / "nfacctd-daemon.log"
        return log.exists() and "( m/print ): [" in log.read_text(errors="replace")

    def command(self, port: int, ctx: Context) -> list[str]:
        (ctx.workdir / "nfacctd.json").unlink(missing_ok=True)
        (ctx.workdir / "nfacctd-daemon.log").unlink(missing_ok=True)
        conf = ctx.workdir / "nfacctd.conf"
        conf.write_text(self.config_text(port, ctx))
        return ["nfacctd", "-f", str(conf)]

    def collect(self) -> Result:
        index = self.ctx.member_index()
        by_address: dict[str, int] = {}
        for text, member in index.by_network.items():
            by_address.setdefault(text.split("/")[0], member)
        totals: Totals = {}
        total = 0
        path = self.ctx.workdir / "nfacctd.json"
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            rec = json.loads(line)
            if "bytes" not in rec:
                continue
            s = by_address.get(rec.get("net_src", ""), -1)
            d = by_address.get(rec.get("net_dst", ""), -1)
            if s >= 0 and d >= 0:
                key = (OWNER_INTERNAL, DIR_NONE)
            elif d >= 0:
                key = (d, 0)
            elif s >= 0:
                key = (s, 1)
            else:
                key = (OWNER_UNATTRIBUTED, DIR_NONE)
            totals[key] = totals.get(key, 0) + int(rec["bytes"])
            total += int(rec["bytes"])
        log = (self.ctx.workdir / "nfacctd-daemon.log").read_text(errors="replace")
        result = Result(bytes=total, per_member=normalise(totals))
        for word in ("ERROR", "WARN"):
            n = log.count(f"{word} (")
            if n:
                result.notes.append(f"{n} {word} log lines")
        return result


def egress_command() -> list[str]:
    exe = shutil.which("egress")
    return [exe] if exe else [sys.executable, "-c", "from reports.cli import main; main()"]


class Egress(Receiver):
    """``egress collect`` (issue 4). Config keys as accounting/collector_config.py reads
    them: [collector] listen, receive_buffer_bytes, flush_seconds, state_dir, workers;
    [[exporters]] address (the sender's loopback addresses)."""

    name = "egress"
    warm_state = True  # journal spares (collector/journal.py), kept between steps
    ready_timeout = 180.0  # imports and JIT cache loading (workers = 2 took ~80 s here)

    def __init__(
        self, workers: int = 1, flush_seconds: float | None = None, journal_on_tmpfs: bool = False
    ) -> None:
        self.workers = workers
        self.flush_seconds = flush_seconds
        # The deployed configuration (deploy/egress.service): the journal on tmpfs.
        self.journal_on_tmpfs = journal_on_tmpfs
        if journal_on_tmpfs:
            self.name = "egress-tmpfs-journal"
        if workers > 1:
            # N workers need N cores: on two cores they share core 0 with the sender.
            self.name = f"egress-w{workers}"
            self.cpus = "0,1"
        self.version = "egress " + _egress_version()

    def ready(self) -> bool:
        # Every worker has recovered its journal and loaded its kernels: before that the
        # socket is bound and buffers, but nothing reads it (start-up is not throughput).
        log = self.ctx.workdir / f"{self.name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count(" receiving (journal recovered") >= self.workers

    def finish(self) -> None:
        if self.journal_on_tmpfs:
            shutil.rmtree(TMPFS_JOURNAL, ignore_errors=True)

    def unavailable(self) -> str | None:
        out = subprocess.run(
            [*egress_command(), "collect", "--help"], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            return "`egress collect` is not available yet (`egress collect --help` fails)"
        return None

    def command(self, port: int, ctx: Context) -> list[str]:
        d = ctx.workdir
        for name in ("egress.duckdb", "egress.duckdb.wal"):
            (d / name).unlink(missing_ok=True)
        _clear_state_keeping_spares(d / "state")
        if self.journal_on_tmpfs:
            _clear_state_keeping_spares(TMPFS_JOURNAL)
        self.config = d / "egress.toml"
        self.config.write_text(
            egress_config(
                ctx.members,
                d / "egress.duckdb",
                ctx.exporters,
                listen=[f"127.0.0.1:{port}"],
                state_dir=d / "state",
                flush_seconds=self.flush_seconds,
                workers=self.workers,
                journal_dir=TMPFS_JOURNAL if self.journal_on_tmpfs else None,
            )
        )
        return [*egress_command(), "collect", "--config", str(self.config)]

    def collect(self) -> Result:
        out = subprocess.run(
            [
                *egress_command(),
                "report",
                "--config",
                str(self.config),
                *("--month", MONTH, "--format", "json"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            return Result(notes=[f"egress report failed: {out.stderr.strip()[-300:]}"])
        return Result(per_member=report_totals(json.loads(out.stdout), self.ctx.members))


TMPFS_JOURNAL = Path("/dev/shm/egress-benchmark-journal")  # as /run/egress in the unit


def _clear_state_keeping_spares(state: Path) -> None:
    """A fresh collector state, except the journal's spare segments: a service that has
    run for a while writes its journal over them (collector/journal.py), and only a
    brand-new installation appends to fresh files for its first two flush intervals
    (~2.9 µs more per datagram on this machine's ext4). Each step thus measures the
    running service; the first step after the warm-up reuses the warm-up's spares."""
    if not state.exists():
        return
    for path in sorted(state.rglob("*"), reverse=True):
        if path.is_file() and not path.name.endswith(".spare"):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def report_totals(report: dict, members: list[SynthMember]) -> Totals:
    """Per (member index, direction) bytes of an ``egress report --format json``."""
    position = {m.id: i for i, m in enumerate(members)}
    totals: Totals = {}
    for m in report["members"]:
        i = position.get(m["id"], -1)
        totals[(i, 0)] = totals.get((i, 0), 0) + int(m["bytes_in"])
        totals[(i, 1)] = totals.get((i, 1), 0) + int(m["bytes_out"])
    totals[(OWNER_INTERNAL, DIR_NONE)] = int(report["internal"]["bytes"])
    u = report["unattributed"]
    totals[(OWNER_UNATTRIBUTED, DIR_NONE)] = sum(
        int(u.get(k, 0)) for k in ("bytes_in", "bytes_out", "bytes_unknown_direction")
    )
    return normalise(totals)


def _egress_version() -> str:
    try:
        from importlib.metadata import version

        return version("egress")
    except Exception:
        return "?"


RECEIVERS = {
    "python-recv": PythonRecv,
    "nfcapd": Nfcapd,
    "nfcapd-lz4": lambda: Nfcapd("-y"),
    "nfacctd": Nfacctd,
    "egress": Egress,
    "egress-w2": lambda: Egress(workers=2),
    "egress-tmpfs-journal": lambda: Egress(journal_on_tmpfs=True),
}
