"""The journal of received batches: round trip, rotation, deletion, torn records."""

from __future__ import annotations

import numpy as np

from collector.datagrams import DatagramBatch
from collector.journal import Journal


def _batch(tag: bytes, n: int) -> DatagramBatch:
    payloads = [tag + bytes([i]) * i for i in range(1, n + 1)]
    sources = ["192.0.2.1" if i % 2 else "2001:db8::1" for i in range(n)]
    return DatagramBatch.from_payloads(payloads, sources, list(range(100, 100 + n)))


def _flat(batches) -> list[tuple]:
    out = []
    for b in batches:
        for i in range(len(b)):
            out.append(
                (bytes(b.payload(i)), tuple(b.source_address[i].tolist()), int(b.arrival_ns[i]))
            )
    return out


def test_round_trip_rotation_and_deletion(tmp_path):
    j = Journal(tmp_path)
    a, b, c = _batch(b"a", 5), _batch(b"b", 3), _batch(b"c", 4)
    j.append(a)
    j.append(b)
    second = j.rotate()
    j.append(c)
    assert _flat(j.replay(1)) == _flat([a, b])  # the open segment is not replayed
    assert _flat(j.replay(1, j.current)) == _flat([a, b, c])
    assert j.delete_before(second) == 1
    assert _flat(j.replay(1, j.current)) == _flat([c])
    j.close()
    reopened = Journal(tmp_path)
    assert reopened.current == second + 1  # never appends to an old segment
    assert _flat(reopened.replay(second)) == _flat([c])


def test_non_contiguous_payloads_are_packed(tmp_path):
    batch = _batch(b"x", 6).select(np.array([0, 2, 5]))
    j = Journal(tmp_path)
    j.append(batch)
    j.rotate()
    assert _flat(j.replay(1)) == _flat([batch])


def test_torn_last_record_is_skipped_and_counted(tmp_path):
    j = Journal(tmp_path)
    j.append(_batch(b"a", 3))
    j.append(_batch(b"b", 3))
    j.close()
    seg = next(tmp_path.glob("*.seg"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # a write cut short by a crash
    again = Journal(tmp_path)
    got = _flat(again.replay(1))
    assert got == _flat([_batch(b"a", 3)])
    assert again.torn_records == 1


def test_empty_batches_write_nothing(tmp_path):
    j = Journal(tmp_path)
    j.append(_batch(b"a", 1).select(np.zeros(1, bool)))
    assert j.bytes_written == 0
