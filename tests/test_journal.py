"""The journal of received batches: round trip, rotation, deletion, torn records."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from collector.datagrams import DatagramBatch
from collector.journal import END_STRUCT, SPARES, Journal, on_tmpfs
from collector.spare_reserve import SpareReserve
from tests.smaps import mapping_fields


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
    seg.write_bytes(data[: -(12 + 7)])  # a write cut short by a crash (end marker: 12 bytes)
    again = Journal(tmp_path)
    got = _flat(again.replay(1))
    assert got == _flat([_batch(b"a", 3)])
    assert again.torn_records == 1


def test_empty_batches_write_nothing(tmp_path):
    j = Journal(tmp_path)
    j.append(_batch(b"a", 1).select(np.zeros(1, bool)))
    assert j.bytes_written == 0


def test_retired_segments_are_recycled_and_their_stale_records_never_replayed(tmp_path):
    j = Journal(tmp_path)
    for _ in range(5):
        j.append(_batch(b"old", 40))
    second = j.rotate()
    j.append(_batch(b"two", 1))
    assert j.delete_before(second) == 1
    assert j.spares() == [1]
    size_before = (tmp_path / "000000000001.spare").stat().st_size
    inode = (tmp_path / "000000000001.spare").stat().st_ino
    j.rotate()  # segment 3 is written over the spare, from its start
    assert j.spares() == []
    third = tmp_path / "000000000003.seg"
    assert third.stat().st_ino == inode
    small = _batch(b"new", 2)
    j.append(small)
    j.rotate()
    assert third.stat().st_size == size_before  # the stale tail is still there...
    assert _flat(j.replay(3, 3)) == _flat([small])  # ...and never replayed
    assert j.torn_records == 0


def test_an_empty_segment_is_renumbered_not_replaced_and_kept_as_a_spare_at_close(tmp_path):
    j = Journal(tmp_path)
    first = tmp_path / "000000000001.seg"
    inode = first.stat().st_ino
    assert j.rotate() == 2 and j.rotate() == 3  # idle flushes
    assert [p.name for p in tmp_path.iterdir()] == ["000000000003.seg"]
    assert (tmp_path / "000000000003.seg").stat().st_ino == inode
    j.close()
    assert j.spares() == [3] and j.segments() == []
    again = Journal(tmp_path)
    assert again.current == 4 and again.spares() == []
    assert (tmp_path / "000000000004.seg").stat().st_ino == inode


def test_a_recycled_segment_with_nothing_written_replays_nothing(tmp_path):
    j = Journal(tmp_path)
    j.append(_batch(b"a", 3))
    second = j.rotate()
    j.append(_batch(b"b", 3))
    j.delete_before(second)  # segment 1 becomes a spare
    j.close()
    restarted = Journal(tmp_path)  # segment 3 is written over the spare...
    assert restarted.current == 3 and restarted.spares() == []
    after_kill = Journal(tmp_path)  # ...and the process is killed before any append
    assert _flat(after_kill.replay(3, 3)) == []
    assert _flat(after_kill.replay(2, 3)) == _flat([_batch(b"b", 3)])
    assert after_kill.torn_records == 0


def test_a_torn_record_over_a_recycled_file_ends_the_segment(tmp_path):
    j = Journal(tmp_path)
    for _ in range(4):
        j.append(_batch(b"old", 30))
    j.delete_before(j.rotate())
    j.rotate()  # segment 3 over segment 1's file
    keep, cut = _batch(b"k", 3), _batch(b"c", 20)
    start = j.bytes_written  # where segment 3 starts, in bytes written by this journal
    j.append(keep)
    at = j.bytes_written - start
    j.append(cut)
    end_of_cut = j.bytes_written - start
    j.close()
    seg = tmp_path / "000000000003.seg"
    data = bytearray(seg.read_bytes())
    # the write of `cut` stopped after 40 bytes: the rest is what was there before
    filler = bytes(range(256)) * ((end_of_cut - at) // 256 + 1)
    data[at + 40 : end_of_cut] = filler[: end_of_cut - at - 40]
    seg.write_bytes(bytes(data))
    again = Journal(tmp_path)
    assert _flat(again.replay(3, 3)) == _flat([keep])
    assert again.torn_records == 1


def test_segment_numbers_never_repeat_while_a_spare_exists(tmp_path):
    j = Journal(tmp_path)
    j.append(_batch(b"a", 3))
    j.delete_before(j.rotate())
    j.close()  # everything committed: only spares are left (segment 1, empty segment 2)
    assert j.segments() == [] and j.spares() == [1, 2]
    again = Journal(tmp_path)
    assert again.current == 3  # after the spares' numbers, not 1
    again.append(_batch(b"b", 2))
    again.rotate()
    assert _flat(again.replay(1)) == _flat([_batch(b"b", 2)])


def test_format_1_records_are_still_replayed_and_their_files_not_recycled(tmp_path):
    import struct

    batch = _batch(b"v1", 4)
    payload = bytes(batch.buffer)
    index = b"".join(
        [
            batch.lengths.astype("<u4").tobytes(),
            batch.source_address.astype("<u8").tobytes(),
            batch.source_port.astype("<u2").tobytes(),
            batch.arrival_ns.astype("<i8").tobytes(),
        ]
    )
    size = 16 + len(index) + len(payload) + 12
    record = (
        struct.pack("<4sIQ", b"EGJ1", 4, len(payload))
        + index
        + payload
        + struct.pack("<4sQ", b"EGJ$", size)
    )
    (tmp_path / "000000000001.seg").write_bytes(record * 2)
    j = Journal(tmp_path)
    assert _flat(j.replay(1, 1)) == _flat([batch, batch])
    j.delete_before(j.current)
    assert j.spares() == []  # removed, not kept for reuse


def _retire_all(j: Journal) -> None:
    j.delete_before(j.rotate())


def test_retiring_keeps_the_largest_files_as_spares(tmp_path):
    j = Journal(tmp_path)
    sizes = []
    for n in (30, 5, 60, 10):  # four segments of different sizes, retired together
        j.append(_batch(b"s", n))
        sizes.append(j._position + END_STRUCT.size)  # records, then the end marker
        j.rotate()
    assert j.delete_before(j.current) == 4
    assert j.segments() == [j.current]
    assert j.spare_bytes() == sorted(sizes)[-SPARES:]


def test_a_grown_spare_is_written_over_and_replays_only_its_new_records(tmp_path):
    j = Journal(tmp_path)
    j.append(_batch(b"a", 8))
    _retire_all(j)
    before = j.spare_bytes()
    while j.grow_spare(before[0] + 5 * 4096 + 123, step=4096):
        pass
    assert j.spare_bytes() == [before[0] + 5 * 4096 + 123]
    assert not j.grow_spare(1)  # every spare is already that large
    fresh = _batch(b"f", 3)
    seg = j.rotate()  # written over the grown spare
    j.append(fresh)
    j.rotate()
    assert _flat(j.replay(seg)) == _flat([fresh])
    j.close()
    assert _flat(Journal(tmp_path).replay(seg)) == _flat([fresh])


def test_growing_never_takes_the_room_the_open_segment_needs(tmp_path):
    j = Journal(tmp_path)
    assert not j.grow_spare(1 << 20)  # no spare yet
    j.append(_batch(b"a", 4))
    _retire_all(j)
    size = j.spare_bytes()[0]
    assert not j.grow_spare(size + 4096, keep_free=1 << 62)
    assert j.spare_bytes() == [size]


def test_the_reserve_grows_spares_to_the_peak_rate_at_idle_priority(tmp_path):
    j = Journal(tmp_path, mapped=True)
    j.append(_batch(b"a", 4))
    _retire_all(j)
    reserve = SpareReserve(j, flush_seconds=1.0, margin=2.0, poll_seconds=0.05)
    reserve.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not reserve.steps:
            j.append(_batch(b"r", 200))  # ~20 KB per append: a write rate to follow
            time.sleep(0.01)
        policy = os.sched_getscheduler(reserve._thread.native_id)
        while time.monotonic() < deadline and not _all_spares_mapped(j, reserve.target):
            time.sleep(0.05)
    finally:
        reserve.stop()
    assert reserve.steps > 0 and reserve.target > 0
    assert min(j.spare_bytes()) >= reserve.target
    assert reserve.mapped > 0 and _all_spares_mapped(j, reserve.target)  # then populated
    assert policy == os.SCHED_IDLE
    assert not reserve._thread.is_alive()


def test_mapped_spares_have_their_pages_in_the_page_table(tmp_path):
    """map_spares populates (MADV_POPULATE_WRITE): the map's pages are resident in this
    process at once, before any write touches them; a spare grown since has its addition
    populated in the same map; a map forgotten is released."""
    j = Journal(tmp_path, mapped=True)
    j.append(_batch(b"p", 4))
    _retire_all(j)
    assert j.grow_spare(4 << 20, step=4 << 20)
    assert j.map_spares() == 1
    (mapped,) = j._maps.values()
    area = mapped.view
    assert mapping_fields(mapped.address)["Rss"] == len(area) == 4 << 20
    area[:4] = np.frombuffer(b"kept", np.uint8)
    assert j.grow_spare(8 << 20, step=4 << 20)
    assert j.map_spares() == 1
    assert list(j._maps.values()) == [mapped]  # the same map, populated further
    assert mapping_fields(mapped.address)["Rss"] == len(mapped.view) == 8 << 20
    assert bytes(mapped.view[:4]) == b"kept"
    j.remove_spares()  # forgotten: released, while a view may still read it
    assert mapping_fields(mapped.address)["Rss"] == 0
    assert bytes(area[:4]) == b"kept"


def _all_spares_mapped(j: Journal, target: int) -> bool:
    sizes = [(p.stat().st_size, p.stat().st_ino) for p in j._spare_paths()]
    return all(size >= target and len(j._maps.get(ino, ())) == size for size, ino in sizes)


def test_after_a_restart_the_reserve_grows_spares_to_the_largest_file(tmp_path):
    j = Journal(tmp_path)
    for n in (250, 20, 250, 20):  # segments of the last run's peak, and small ones
        j.append(_batch(b"s", n))
        j.rotate()
    j.delete_before(j.current)
    j.close()
    j = Journal(tmp_path)  # the next run writes over the largest; no rate measured yet
    largest = j.largest_file_bytes()
    assert min(j.spare_bytes()) < largest
    reserve = SpareReserve(j, flush_seconds=60.0, poll_seconds=0.05)
    reserve.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and min(j.spare_bytes()) < largest:
            time.sleep(0.05)
    finally:
        reserve.stop()
    assert reserve.target == largest
    assert j.spare_bytes() == [largest] * len(j.spare_bytes())
    j.close()


# -- writes through the segment's memory map (the journal on tmpfs) ---------------------------


def _mapped_journal(path, n_old: int = 250) -> Journal:
    """A mapped journal whose next segment is written over a spare mapped by map_spares."""
    j = Journal(path, mapped=True)
    j.append(_batch(b"old", n_old))
    _retire_all(j)
    assert j.map_spares() == 1
    assert j.map_spares() == 0  # mapped over its whole size already
    _onto_spare(j)
    return j


def _onto_spare(j: Journal) -> None:
    """Rotate onto a spare (a segment with nothing written is renumbered in place)."""
    j.append(_batch(b"pad", 1))
    j.rotate()


def _in_place(j: Journal, batch: DatagramBatch, reserve: int) -> DatagramBatch:
    """``batch`` packed, as the listener does, into the area the journal offers for
    ``reserve`` datagrams (a receiver reserves for every slot; truncated ones are not kept)."""
    payloads = [bytes(batch.payload(i)) for i in range(len(batch))]
    area = j.payload_area(reserve, sum(map(len, payloads)))
    assert area is not None
    area[:] = np.frombuffer(b"".join(payloads), np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in payloads])[:-1]]).astype(np.int64)
    return DatagramBatch(
        area,
        offsets,
        batch.lengths.copy(),
        batch.source_address.copy(),
        batch.source_port.copy(),
        batch.arrival_ns.copy(),
    )


def _after_kill(j: Journal, path) -> tuple[list, int]:
    """What a restart replays of the open segment, and the torn records it counts, when the
    process is killed now (its file is closed, nothing else is done)."""
    seg = j.current
    os.close(j._fd)
    again = Journal(path)
    return _flat(again.replay(seg, seg)), again.torn_records


def test_mapped_records_are_the_bytes_pwritev_writes(tmp_path):
    """The same batches through the map (in place, copied, and past the map's end) and
    through pwritev give byte-identical segment files."""
    files = {}
    for mapped in (True, False):
        j = Journal(tmp_path / str(mapped), mapped=mapped)
        j.append(_batch(b"old", 250))
        _retire_all(j)
        j.map_spares()
        _onto_spare(j)
        seg = j.current
        one, two = _batch(b"one", 40), _batch(b"two", 9).select(np.array([0, 3, 8]))
        j.append(_in_place(j, one, 40) if mapped else one)
        j.append(two)  # not contiguous: copied into the map
        for _ in range(4):
            j.append(_batch(b"big", 200))  # beyond the spare: written with pwritev
        j.rotate()
        assert _flat(j.replay(seg, seg)) == _flat([one, two] + [_batch(b"big", 200)] * 4)
        files[mapped] = (j.directory / f"{seg:012d}.seg").read_bytes()
        # the first records through the map, at least the last with pwritev
        assert 2 <= j.mapped_records < 6 if mapped else j.mapped_records == 0
        j.close()
    assert files[True] == files[False]


def test_a_batch_packed_for_more_slots_than_it_kept_is_moved_into_place(tmp_path):
    j = _mapped_journal(tmp_path)
    kept = _batch(b"k", 30)
    j.append(_in_place(j, kept, reserve=37))  # seven slots truncated by the kernel
    after = _batch(b"z", 5)
    j.append(after)
    j.rotate()
    assert _flat(j.replay(j.current - 1)) == _flat([kept, after])
    assert j.mapped_records == 2


def test_killed_after_packing_before_the_header_replays_what_was_journaled(tmp_path):
    j = _mapped_journal(tmp_path)
    first = _batch(b"f", 20)
    j.append(first)
    _in_place(j, _batch(b"lost", 30), reserve=30)  # packed, then kill -9 before append
    assert _after_kill(j, tmp_path) == (_flat([first]), 0)


def test_no_area_is_offered_past_the_map_or_without_one(tmp_path):
    j = _mapped_journal(tmp_path, n_old=10)
    size = j.spare_bytes() or [len(j._area)]
    assert j.payload_area(10, size[0]) is None  # would not fit
    unmapped = Journal(tmp_path / "plain", mapped=False)
    unmapped.append(_batch(b"a", 10))
    _retire_all(unmapped)
    assert unmapped.map_spares() == 0
    _onto_spare(unmapped)
    assert unmapped.payload_area(1, 10) is None


def test_a_grown_spare_is_mapped_again_over_its_new_size(tmp_path):
    j = Journal(tmp_path, mapped=True)
    j.append(_batch(b"a", 50))
    _retire_all(j)
    assert j.map_spares() == 1
    size = j.spare_bytes()[0]
    while j.grow_spare(size + 3 * 4096, step=4096):
        pass
    assert j.map_spares() == 1
    _onto_spare(j)
    assert len(j._area) == size + 3 * 4096


def test_tmpfs_is_recognised(tmp_path):
    mounts = {}
    with open("/proc/mounts") as f:
        for line in f:
            _dev, point, kind, *_ = line.split()
            mounts[point] = kind
    if mounts.get("/dev/shm") != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm on this machine")
    assert on_tmpfs(Path("/dev/shm"))
    assert Journal(Path("/dev/shm") / f"egress-test-{os.getpid()}").mapped
    shutil.rmtree(Path("/dev/shm") / f"egress-test-{os.getpid()}")
    kind = mounts.get(str(tmp_path)) or os.popen(f"stat -f -c %T {tmp_path}").read().strip()
    assert on_tmpfs(tmp_path) == (kind == "tmpfs")


def _in_slots(j: Journal, batch: DatagramBatch, stride: int = 256, skip=(2,)) -> DatagramBatch:
    """``batch`` as received straight into the slots the journal offers (one datagram per
    ``stride`` bytes; the slots in ``skip`` held datagrams the kernel truncated)."""
    slots = len(batch) + len(skip)
    area = j.slot_area(slots, stride)
    assert area is not None
    kept = [i for i in range(slots) if i not in skip]
    for k, i in enumerate(kept):
        payload = np.frombuffer(bytes(batch.payload(k)), np.uint8)
        assert len(payload) <= stride
        area[i * stride : i * stride + len(payload)] = payload
        area[i * stride + len(payload) : (i + 1) * stride] = 0xEE  # a slot's unused end
    return DatagramBatch(
        area,
        np.array(kept, np.int64) * stride,
        batch.lengths.copy(),
        batch.source_address.copy(),
        batch.source_port.copy(),
        batch.arrival_ns.copy(),
    )


def test_slot_records_replay_their_datagrams_among_packed_ones(tmp_path):
    j = _mapped_journal(tmp_path)
    first, second, third = _batch(b"p", 10), _batch(b"s", 40), _batch(b"q", 7)
    j.append(first)
    j.append(_in_slots(j, second))
    j.append(third)
    j.rotate()
    assert _flat(j.replay(j.current - 1)) == _flat([first, second, third])
    assert j.slot_records == 1 and j.mapped_records == 3
    j.close()
    assert _flat(Journal(tmp_path).replay(j.current - 1)) == _flat([first, second, third])


def test_killed_after_receiving_into_slots_replays_what_was_journaled(tmp_path):
    j = _mapped_journal(tmp_path)
    first = _batch(b"f", 20)
    j.append(first)
    _in_slots(j, _batch(b"lost", 30))  # received, then kill -9 before append
    assert _after_kill(j, tmp_path) == (_flat([first]), 0)


def test_a_torn_slot_record_is_counted(tmp_path):
    j = _mapped_journal(tmp_path)
    first = _batch(b"f", 20)
    j.append(first)
    at = j._position
    j.append(_in_slots(j, _batch(b"t", 30)))
    size = j._position - at
    j._area[at + size - 8 : at + size] = 0  # the trailer's segment number, cut
    assert _after_kill(j, tmp_path) == (_flat([first]), 1)


def test_slots_offered_before_a_rotation_are_copied_after_it(tmp_path):
    """(The slots hold the next record's place: valid until the next append or rotation.)"""
    j = _mapped_journal(tmp_path)
    j.append(_batch(b"x", 3))
    batch = _in_slots(j, _batch(b"r", 12))
    j.rotate()  # a flush between receiving and journaling (the collector never does)
    j.append(batch)  # in another segment: copied there, still exact
    j.rotate()
    assert _flat(j.replay(j.current - 1)) == _flat([_batch(b"r", 12)])
    assert j.slot_records == 0


def test_no_slots_are_offered_past_the_map_or_without_one(tmp_path):
    j = _mapped_journal(tmp_path, n_old=10)
    assert j.slot_area(4096, 2048) is None
    assert j.slot_area(2, 64) is not None
    unmapped = Journal(tmp_path / "plain", mapped=False)
    assert unmapped.slot_area(1, 64) is None
