"""Journal spares grown ahead of need, by a thread at idle CPU priority.

A segment written over a recycled spare pays a copy into cached pages (0.15-0.3 µs per
1,464-byte datagram, measured); written past the spare's end it also pays block
allocation and fresh pages: ~2.3-2.9 µs on ext4 in the benchmark VM, whose free memory
is handed back to the host and faults again at first touch. Rising traffic (the daily
peak, a restart at a higher rate) would pay that on the receiving thread, at the worst
moment. This thread watches the bytes the journal takes per flush interval (over a
sliding window of that length) and keeps every spare at least ``margin`` x the most seen
since start, growing it in small steps under SCHED_IDLE: it runs only when the core has
nothing else to do, and never takes space the open segment may need (see
Journal.grow_spare).

The journal's largest file is what an earlier run of the collector needed: the reserve
starts from its size, so after a restart the spares are grown to it at once, not one
flush interval later when the rate has been measured again (by then the receiving thread
would have written the second segment past the smaller spare's end).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque

from collector.journal import Journal

log = logging.getLogger("egress.collect")

MARGIN = 1.25  # spare size / the most bytes journaled in one flush interval
POLL_SECONDS = 0.5


class SpareReserve:
    """Start with :meth:`start`, end with :meth:`stop` (before the journal closes)."""

    def __init__(
        self,
        journal: Journal,
        flush_seconds: float,
        *,
        margin: float = MARGIN,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.journal = journal
        self.flush_seconds = flush_seconds
        self.margin = margin
        self.poll_seconds = poll_seconds
        self.target = 0  # bytes every spare should hold
        self.steps = 0  # growth steps done
        self.mapped = 0  # spares mapped (and their pages populated) for the journal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="egress-spares", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        _idle_priority()
        self.target = max(self.target, self.journal.largest_file_bytes())
        samples = deque([(time.monotonic(), self.journal.bytes_written)])
        while not self._stop.wait(self.poll_seconds):
            now, written = time.monotonic(), self.journal.bytes_written
            samples.append((now, written))
            while len(samples) > 2 and now - samples[1][0] >= self.flush_seconds:
                samples.popleft()  # keep one sample at least a flush interval old
            then, before = samples[0]
            per_interval = (written - before) * self.flush_seconds / max(now - then, 1e-3)
            if now - then >= self.flush_seconds:  # a whole interval seen: no burst inflates it
                self.target = max(self.target, int(per_interval * self.margin))
            try:
                while not self._stop.is_set() and self.journal.grow_spare(
                    self.target, keep_free=self.target
                ):
                    self.steps += 1
                if not self._stop.is_set():
                    self.mapped += self.journal.map_spares()
            except OSError as exc:  # e.g. a file system without room: segments still work
                log.warning("journal spares no longer grown ahead of need: %s", exc)
                return


def _idle_priority() -> None:
    """SCHED_IDLE for the calling thread (Linux sets policies per thread; any thread may
    lower its own). Elsewhere the thread keeps its priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
