"""The compiled set walk equals a plain reading of RFC 7011 §3.3 message by message.

Messages are built from well-formed sets, then cut short, padded with zeros, given a set
length below 4 or past their end, or more sets than the limit: every set found, in
order, and every message cut short counted once under its reason.
"""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np

from collector.decode.flowsets import walk_sets


def _reference(buffer: bytes, starts, ends, limit: int):
    sets, errors = [], Counter()
    for m, (pos, end) in enumerate(zip(starts, ends, strict=True)):
        n = 0
        while pos + 4 <= end:
            if n >= limit:
                errors["x_too_many_sets"] += 1
                break
            set_id, length = struct.unpack_from(">HH", buffer, pos)
            if length < 4 or pos + length > end:
                if not (set_id == 0 and length == 0):
                    errors["x_bad_set_length"] += 1
                break
            sets.append((m, set_id, pos + 4, length - 4))
            pos += length
            n += 1
    return sets, errors


def _message(rng) -> bytes:
    body = b""
    for _ in range(rng.integers(0, 8)):
        content = bytes(rng.integers(0, 256, rng.integers(0, 40), dtype=np.uint8))
        body += struct.pack(">HH", int(rng.integers(0, 400)), 4 + len(content)) + content
    damage = rng.integers(0, 6)
    if damage == 1 and body:
        body = body[: rng.integers(1, len(body) + 1)]  # cut anywhere
    elif damage == 2:
        body += bytes(rng.integers(1, 12))  # zero padding
    elif damage == 3:
        body += struct.pack(">HH", 300, int(rng.integers(0, 4)))  # length below 4
    elif damage == 4:
        body += struct.pack(">HH", 300, 60000) + b"\x01" * 8  # past the end
    return body


def test_the_walk_equals_the_reference_on_damaged_messages():
    rng = np.random.default_rng(11)
    for limit in (3, 100):
        messages = [_message(rng) for _ in range(2_000)]
        buffer, starts, ends = b"", [], []
        for body in messages:
            header = bytes(rng.integers(0, 256, 16, dtype=np.uint8))  # a header before
            starts.append(len(buffer) + len(header))
            buffer += header + body
            ends.append(len(buffer))
        errors = Counter()
        msg, set_id, start, length = walk_sets(
            np.frombuffer(buffer, np.uint8),
            np.array(starts, np.int64),
            np.array(ends, np.int64),
            limit,
            errors,
            "x",
        )
        expected, expected_errors = _reference(buffer, starts, ends, limit)
        got = list(zip(msg.tolist(), set_id.tolist(), start.tolist(), length.tolist(), strict=True))
        assert got == expected
        assert errors == expected_errors
        assert expected_errors["x_bad_set_length"] > 100
        if limit == 3:
            assert expected_errors["x_too_many_sets"] > 100


def test_no_messages_and_empty_messages():
    errors = Counter()
    buffer = np.zeros(8, np.uint8)
    for starts, ends in (([], []), ([0, 4], [0, 8])):
        out = walk_sets(
            buffer, np.array(starts, np.int64), np.array(ends, np.int64), 5, errors, "x"
        )
        assert all(len(column) == 0 for column in out)
    assert not errors  # four zero bytes: padding, not a bad set
