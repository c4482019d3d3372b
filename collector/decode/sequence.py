"""Export sequence numbers: what never reached us, per exporter, domain and time bin.

Each stream — (exporter, version, domain) with domain = v5 engine type/id, v9 source id,
IPFIX observation domain — numbers its messages. What one message adds to the counter
differs by protocol (RFC 3954 §5.1, RFC 7011 §3.1):

- NetFlow v5: ``flow_sequence`` counts flows: a datagram of n records adds n;
- NetFlow v9: ``package_sequence`` counts export packets: each adds 1;
- IPFIX: the sequence number counts data records (options data records included) sent
  *before* this message: a message with n data records adds n. When a message holds
  data sets whose template is unknown its record count is unknown: the next message
  re-synchronises the stream instead of guessing.

For a message with sequence s, increment c, and the stream's expectation e, the 32-bit
signed difference d = s - e (mod 2**32) classifies it:

- d == 0: in order;
- 0 < d <= MAX_JUMP: a gap of d units is counted as lost, then e = s + c;
- -MAX_JUMP <= d < 0: a message from the past. If its sequence was seen recently it is
  a **duplicate** (its records are still decoded; the count is for the operator);
  if it lies within the span of the RECENT last messages it is **reordered**: it fills
  part of a gap counted earlier, so ``lost`` is reduced by c and ``reordered`` counts it;
  further back it is a **reset** (an exporter restarted a little after its numbering
  began: read as reordering, every later message would lower ``lost``);
- |d| > MAX_JUMP: a **reset** (exporter restarted): counted, no loss, e = s + c.

Counters are per (stream, bin of the message's export time), so completeness can be
shown per bin. ``expected = received + lost`` in units of the stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

MOD = 1 << 32
MAX_JUMP = 1 << 24  # larger jumps are restarts, not losses
RECENT = 256  # sequence numbers remembered per stream to tell duplicates from reorders
MAX_BREAKS = 32  # messages per stream and batch handled alone before the rest all are

StreamKey = tuple[tuple[int, int], int, int]  # exporter pair, version, domain


@dataclass
class SequenceRow:
    """Counters of one stream in one bin (units: flows for v5, packets v9, records IPFIX)."""

    exporter: tuple[int, int]
    version: int
    domain: int
    bin_start_ms: int
    messages: int = 0
    received: int = 0  # units carried by the messages received
    lost: int = 0  # units missing (negative when reordered messages filled earlier gaps)
    duplicates: int = 0  # messages
    reordered: int = 0  # messages
    resets: int = 0  # messages
    resyncs: int = 0  # messages after one whose increment was unknown


@dataclass
class _Stream:
    expected: int | None = None
    recent: deque | None = None


class SequenceTracker:
    """Per-stream expectations; :meth:`observe` returns per-bin counters of a batch."""

    def __init__(self, bin_ms: int = 300_000) -> None:
        self.bin_ms = bin_ms
        self._streams: dict[StreamKey, _Stream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def observe(
        self,
        exporters: list[tuple[int, int]],
        version: int,
        exporter_index: np.ndarray,
        domain: np.ndarray,
        sequence: np.ndarray,
        increment: np.ndarray,
        export_ms: np.ndarray,
    ) -> list[SequenceRow]:
        """Account for messages in arrival order; increment < 0 means unknown."""
        rows: dict[tuple, SequenceRow] = {}
        n = len(sequence)
        if n == 0:
            return []
        bins = (np.asarray(export_ms, np.int64) // self.bin_ms) * self.bin_ms
        ex = np.asarray(exporter_index, np.int64)
        dom = np.asarray(domain, np.int64)
        seq = np.asarray(sequence, np.int64) % MOD
        inc = np.asarray(increment, np.int64)
        # Group messages by stream, preserving arrival order inside each stream. One
        # stream (one exporter and domain: the usual batch at a high rate) needs no sort.
        if ex.min() == ex.max() and dom.min() == dom.max():
            groups = [np.arange(n)]
        else:
            order = np.lexsort((np.arange(n), dom, ex))
            ex_o, dom_o = ex[order], dom[order]
            cuts = np.flatnonzero((np.diff(ex_o) != 0) | (np.diff(dom_o) != 0)) + 1
            groups = np.split(order, cuts)
        for group in groups:
            e = int(ex[group[0]])
            d = int(dom[group[0]])
            key = (exporters[e], version, d)
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream(None, deque(maxlen=RECENT))
            self._observe_stream(rows, key, stream, seq[group], inc[group], bins[group])
        return list(rows.values())

    def _observe_stream(
        self,
        rows: dict,
        key: StreamKey,
        stream: _Stream,
        seq: np.ndarray,
        inc: np.ndarray,
        bins: np.ndarray,
    ) -> None:
        """One stream's messages of a batch, in arrival order: each run that continues the
        stream exactly is counted at once, each message that breaks it (a gap, a reorder,
        a duplicate, a reset, an unknown increment) alone. A loss then costs one message
        handled in Python, not the whole batch; past MAX_BREAKS breaks in a batch the rest
        goes one by one (heavy disorder: small batches of it)."""
        start, n = 0, len(seq)
        for _ in range(MAX_BREAKS):
            s, i, b = seq[start:], inc[start:], bins[start:]
            unknown = np.flatnonzero(i < 0)
            known = int(unknown[0]) if len(unknown) else len(s)
            run = 0
            if known:
                expect = np.empty(known, np.int64)
                expect[0] = stream.expected if stream.expected is not None else s[0]
                expect[1:] = (s[: known - 1] + i[: known - 1]) % MOD
                breaks = np.flatnonzero(expect != s[:known])
                run = int(breaks[0]) if len(breaks) else known
            if run:
                self._count_run(rows, key, stream, s[:run], i[:run], b[:run])
            if run == len(s):
                return
            self._one(stream, self._row(rows, key, int(b[run])), int(s[run]), int(i[run]))
            start += run + 1
            if start == n:
                return
        rest = zip(seq[start:].tolist(), inc[start:].tolist(), bins[start:].tolist(), strict=True)
        for sequence, increment, bin_start in rest:
            self._one(stream, self._row(rows, key, bin_start), sequence, increment)

    def _count_run(
        self,
        rows: dict,
        key: StreamKey,
        stream: _Stream,
        s: np.ndarray,
        i: np.ndarray,
        b: np.ndarray,
    ) -> None:
        """Messages that each continue the stream exactly (what :meth:`_one` does for one)."""
        if b.min() == b.max():  # one bin: no grouping needed
            row = self._row(rows, key, int(b[0]))
            row.messages += len(b)
            row.received += int(i.sum())
        else:
            for bin_start in np.unique(b).tolist():
                sel = b == bin_start
                row = self._row(rows, key, bin_start)
                row.messages += int(sel.sum())
                row.received += int(i[sel].sum())
        stream.recent.extend(s[-RECENT:].tolist())
        stream.expected = int((s[-1] + i[-1]) % MOD)

    def _row(self, rows: dict, key: StreamKey, b: int) -> SequenceRow:
        row = rows.get((key, b))
        if row is None:
            row = rows[(key, b)] = SequenceRow(key[0], key[1], key[2], b)
        return row

    @staticmethod
    def _one(stream: _Stream, row: SequenceRow, s: int, c: int) -> None:
        row.messages += 1
        row.received += max(c, 0)
        if stream.expected is None:
            if c < 0:
                row.resyncs += 1
        else:
            diff = (s - stream.expected) % MOD
            if diff >= MOD // 2:
                diff -= MOD
            if diff == 0:
                pass
            elif 0 < diff <= MAX_JUMP:
                row.lost += diff
            elif -MAX_JUMP <= diff < 0 and s in stream.recent:
                row.duplicates += 1
                row.received -= max(c, 0)
                return
            elif -MAX_JUMP <= diff < 0 and -diff <= _span(stream):
                row.reordered += 1
                row.lost -= max(c, 0)
                stream.recent.append(s)
                return  # the expectation stays where the newest message left it
            else:
                row.resets += 1
        stream.recent.append(s)
        stream.expected = (s + c) % MOD if c >= 0 else None


def _span(stream: _Stream) -> int:
    """How far back the remembered messages reach from the expectation (units)."""
    if not stream.recent or stream.expected is None:
        return 0
    return (stream.expected - stream.recent[0]) % MOD
