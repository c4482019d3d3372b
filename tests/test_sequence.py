"""Sequence tracking in batches against the message-by-message rules it must equal."""

from __future__ import annotations

from collections import deque
from dataclasses import astuple

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.decode.sequence import MAX_BREAKS, MOD, RECENT, SequenceTracker, _Stream

EXPORTERS = [(0, 0xFFFF_C000_0201), (0, 0xFFFF_C000_0202)]
BIN_MS = 1000


@st.composite
def message_streams(draw):
    """Messages of two exporters and two domains: mostly in order, with gaps, replays of
    past messages, restarts and unknown increments, the way lossy networks deliver them."""
    next_seq = {}
    sent = {}
    messages = []
    for _ in range(draw(st.integers(1, 160))):
        stream = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
        seq = next_seq.setdefault(stream, draw(st.integers(0, MOD - 1)))
        kind = draw(st.sampled_from(["next"] * 12 + ["gap", "past", "restart", "unknown"]))
        inc = draw(st.integers(0, 40))
        if kind == "gap":
            seq = (seq + draw(st.integers(1, 5000))) % MOD
        elif kind == "past" and sent.get(stream):
            seq = draw(st.sampled_from(sent[stream]))
        elif kind == "restart":
            seq = draw(st.integers(0, MOD - 1))
        elif kind == "unknown":
            inc = -1
        next_seq[stream] = (seq + max(inc, 0)) % MOD
        sent.setdefault(stream, []).append(seq)
        messages.append((*stream, seq, inc, draw(st.integers(0, 2)) * BIN_MS))
    return messages


def _one_by_one(messages) -> dict:
    """The rules applied to each message alone, in arrival order."""
    streams: dict = {}
    rows: dict = {}
    tracker = SequenceTracker(BIN_MS)
    for e, d, s, c, b in messages:
        key = (EXPORTERS[e], 10, d)
        stream = streams.setdefault(key, _Stream(None, deque(maxlen=RECENT)))
        tracker._one(stream, tracker._row(rows, key, b), s, c)
    return {(r.exporter, r.domain, r.bin_start_ms): astuple(r) for r in rows.values()}


def _batched(messages, size: int) -> dict:
    tracker = SequenceTracker(BIN_MS)
    out: dict = {}
    for k in range(0, len(messages), size):
        part = np.array(messages[k : k + size], np.int64).reshape(-1, 5)
        for r in tracker.observe(
            EXPORTERS, 10, part[:, 0], part[:, 1], part[:, 2], part[:, 3], part[:, 4]
        ):
            key = (r.exporter, r.domain, r.bin_start_ms)
            row = list(out.get(key, astuple(r)[:4] + (0,) * (len(astuple(r)) - 4)))
            out[key] = tuple(row[:4]) + tuple(
                a + b for a, b in zip(row[4:], astuple(r)[4:], strict=True)
            )
    return out


def _summed(rows: dict) -> dict:
    return {k: v for k, v in rows.items() if any(v[4:])}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_streams(), st.sampled_from([1, 7, 64, 4096]))
def test_batches_count_what_message_by_message_rules_count(messages, size):
    assert _summed(_batched(messages, size)) == _summed(_one_by_one(messages))


def test_more_breaks_than_the_bulk_path_takes_still_count_exactly():
    # Every other message jumps ahead: far more breaks in one batch than MAX_BREAKS.
    messages, seq = [], 1000
    for k in range(4 * MAX_BREAKS):
        seq += 30 if k % 2 else 31
        messages.append((0, 0, seq, 30, 0))
    assert _summed(_batched(messages, len(messages))) == _summed(_one_by_one(messages))
    lost = sum(v[6] for v in _batched(messages, len(messages)).values())
    assert lost == 2 * MAX_BREAKS - 1


def _observe(tracker: SequenceTracker, seqs: list[int], increment: int = 30):
    n = len(seqs)
    zeros = np.zeros(n, np.int64)
    rows = tracker.observe(
        EXPORTERS[:1], 5, zeros, zeros, np.array(seqs, np.int64), np.full(n, increment), zeros
    )
    return [astuple(r)[4:] for r in rows]  # messages, received, lost, dups, reord, resets, ...


def test_an_exporter_restarting_a_little_after_it_began_is_a_reset_not_reordering():
    tracker = SequenceTracker(BIN_MS)
    _observe(tracker, list(range(0, 300_000, 30)))  # 10,000 messages, 300,000 flows
    # The router reboots and counts from 0 again: 300,000 back, far beyond what the last
    # RECENT messages span, well within MAX_JUMP.
    assert _observe(tracker, list(range(0, 3_000, 30))) == [(100, 3_000, 0, 0, 0, 1, 0)]


def test_a_message_that_fills_a_recent_gap_is_reordered():
    tracker = SequenceTracker(BIN_MS)
    # 0, 30, then 90 (60 lost), then the late 60: it fills the gap.
    assert _observe(tracker, [0, 30, 90, 60]) == [(4, 120, 0, 0, 1, 0, 0)]
