"""Shared helpers of the benchmark suite: timing statistics, machine facts, RESULTS.md.

Every figure is the median of several runs, shown with its min and max. Each benchmark
owns one section of benchmarks/RESULTS.md, delimited by HTML comments, and rewrites only
that section, so benchmarks can be rerun one at a time.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work"
RESULTS = BENCH_DIR / "RESULTS.md"


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        m, lo, hi = (v * scale for v in (self.median, self.low, self.high))
        return f"{m:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f}, n={self.runs})"


def machine() -> str:
    """One line describing the machine and the software versions."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import duckdb
    import numba
    import numpy
    import polars

    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}; Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, numba {numba.__version__}, duckdb {duckdb.__version__}, "
        f"polars {polars.__version__}"
    )


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = (
        RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# egress benchmark results\n"
    )
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    RESULTS.write_text(text, encoding="utf-8")


def proc_status_kb(field: str) -> int:
    """A kB field of /proc/self/status (VmRSS, VmHWM, RssAnon...); 0 where unavailable."""
    return proc_status_kbs((field,))[0]


def proc_status_kbs(fields: tuple[str, ...], pid: int | str = "self") -> list[int]:
    """kB fields of /proc/PID/status, read once; 0 for each one unavailable (a process
    gone, another system)."""
    found = dict.fromkeys(fields, 0)
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in found:
                found[name] = int(rest.split()[0])
    except OSError:
        pass
    return [found[f] for f in fields]


class PeakMemory:
    """Samples this process's anonymous resident memory (RssAnon) every 20 ms.

    VmHWM (peak RSS) would also count the pages of memory-mapped capture files, which are
    page cache, not memory the program holds; we report both.
    """

    def __init__(self) -> None:
        self.peak_anon_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon_kb = max(self.peak_anon_kb, proc_status_kb("RssAnon"))
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon_kb = max(self.peak_anon_kb, proc_status_kb("RssAnon"))
        self.peak_rss_kb = proc_status_kb("VmHWM")


def wait_child(proc: subprocess.Popen) -> int:
    """Wait for a child benchmark; on SIGTERM or Ctrl-C here, pass SIGTERM on so that it
    stops its receivers and restores what it changed (killed after 60 s)."""
    try:
        return proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def run_json(args: list[str]) -> dict:
    """Run a child Python process printing one JSON object on its last line."""
    import json

    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
