"""Capture reading: link types, pcap and pcapng, fragments, and corrupt files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from collector.datagrams import pair_to_address
from collector.pcap import CaptureError, CaptureStats, read_datagrams
from collector.synth.pcapwriter import (
    LINK_ETHERNET,
    LINK_LINUX_SLL,
    LINK_RAW,
    Datagram,
    ip_udp_packet,
    write_capture,
)

PAYLOADS = [bytes([i]) * (10 + i) for i in range(20)]


def _datagrams(source="192.0.2.7"):
    return [
        Datagram(1_000_000_000 * (i + 1) + 123, source, p, 40000 + i)
        for i, p in enumerate(PAYLOADS)
    ]


def _read_all(path, **kw):
    stats = CaptureStats()
    out = []
    for batch in read_datagrams(path, stats=stats, **kw):
        for i in range(len(batch)):
            out.append(
                (
                    bytes(batch.payload(i)),
                    str(pair_to_address(*batch.source_address[i])),
                    int(batch.source_port[i]),
                    int(batch.arrival_ns[i]),
                )
            )
    return out, stats


@pytest.mark.parametrize("linktype", [LINK_ETHERNET, LINK_LINUX_SLL, LINK_RAW])
@pytest.mark.parametrize("pcapng", [False, True])
@pytest.mark.parametrize("source", ["192.0.2.7", "2001:db8::7"])
def test_payloads_sources_and_times_round_trip(tmp_path, linktype, pcapng, source):
    path = tmp_path / "x.cap"
    write_capture(path, _datagrams(source), linktype=linktype, pcapng=pcapng)
    got, stats = _read_all(path)
    assert [g[0] for g in got] == PAYLOADS
    assert {g[1] for g in got} == {source}
    assert [g[2] for g in got] == [40000 + i for i in range(20)]
    assert [g[3] for g in got] == [1_000_000_000 * (i + 1) + 123 for i in range(20)]
    assert stats.frames == 20 and stats.udp_datagrams == 20 and not stats.skipped


def test_small_chunks_carry_records_across_chunk_boundaries(tmp_path):
    path = tmp_path / "x.pcap"
    write_capture(path, _datagrams())
    got, _ = _read_all(path, chunk_bytes=37)
    assert [g[0] for g in got] == PAYLOADS


def test_hasher_sees_exactly_the_file_bytes(tmp_path):
    import hashlib

    path = tmp_path / "x.pcap"
    write_capture(path, _datagrams())
    h = hashlib.sha256()
    for _ in read_datagrams(path, hasher=h, chunk_bytes=50):
        pass
    assert h.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def _pcap(frames, linktype=LINK_ETHERNET):
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 1000 + i, 0, len(f), len(f)) + f
    return out


ETH_V4 = b"\x02" * 12 + b"\x08\x00"


def test_vlan_tagged_frames_and_non_udp_frames(tmp_path):
    udp = ip_udp_packet(Datagram(0, "192.0.2.9", b"hello"))
    tagged = b"\x02" * 12 + b"\x81\x00\x00\x05" + b"\x08\x00" + udp
    qinq = b"\x02" * 12 + b"\x88\xa8\x00\x05\x81\x00\x00\x06\x08\x00" + udp
    tcp = bytearray(udp)
    tcp[9] = 6  # protocol TCP (checksum irrelevant to the reader)
    arp = b"\x02" * 12 + b"\x08\x06" + b"\0" * 28
    path = tmp_path / "x.pcap"
    path.write_bytes(_pcap([tagged, qinq, ETH_V4 + bytes(tcp), arp]))
    got, stats = _read_all(path)
    assert [g[0] for g in got] == [b"hello", b"hello"]
    assert stats.skipped == {"not_udp": 1, "not_ip": 1}


def test_truncated_frames_are_counted(tmp_path):
    udp = ip_udp_packet(Datagram(0, "192.0.2.9", b"x" * 100))
    path = tmp_path / "x.pcap"
    path.write_bytes(_pcap([ETH_V4 + udp[:60], ETH_V4 + udp[:25], ETH_V4 + udp]))
    got, stats = _read_all(path)
    assert len(got) == 1
    assert stats.skipped == {"frame_truncated": 1, "udp_truncated": 1}


def _fragments_v4(payload: bytes, ident: int, size: int) -> list[bytes]:
    """Split one UDP datagram into IPv4 fragments of ``size`` bytes of IP payload."""
    whole = ip_udp_packet(Datagram(0, "192.0.2.9", payload), ident)
    header, body = whole[:20], whole[20:]
    frames = []
    for off in range(0, len(body), size):
        piece = body[off : off + size]
        more = off + size < len(body)
        flags = (0x2000 if more else 0) | (off // 8)
        h = bytearray(header)
        h[2:4] = struct.pack("!H", 20 + len(piece))
        h[6:8] = struct.pack("!H", flags)
        frames.append(ETH_V4 + bytes(h) + piece)
    return frames


def test_ipv4_fragments_are_reassembled_in_any_order(tmp_path):
    payload = bytes(range(256)) * 12
    frames = _fragments_v4(payload, 77, 1480)
    frames = [frames[2], frames[0], frames[1]]
    lone = _fragments_v4(b"y" * 3000, 78, 1480)[:1]  # never completed
    path = tmp_path / "x.pcap"
    path.write_bytes(_pcap(frames + lone))
    got, stats = _read_all(path)
    assert [g[0] for g in got] == [payload]
    assert got[0][1] == "192.0.2.9"
    assert stats.skipped["ip_fragment_incomplete"] == 1


def test_ipv6_fragments_are_reassembled(tmp_path):
    payload = b"z" * 2500
    whole = ip_udp_packet(Datagram(0, "2001:db8::9", payload))
    header, udp = whole[:40], whole[40:]
    frames = []
    for off in range(0, len(udp), 1232):
        piece = udp[off : off + 1232]
        more = off + 1232 < len(udp)
        frag = struct.pack("!BBHI", 17, 0, off | int(more), 0xABCD)
        h = bytearray(header)
        h[4:6] = struct.pack("!H", 8 + len(piece))
        h[6] = 44
        frames.append(b"\x02" * 12 + b"\x86\xdd" + bytes(h) + frag + piece)
    path = tmp_path / "x.pcap"
    path.write_bytes(_pcap(frames))
    got, _ = _read_all(path)
    assert [g[0] for g in got] == [payload]
    assert got[0][1] == "2001:db8::9"


def test_not_a_capture_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a pcap")
    with pytest.raises(
        CaptureError, match=r"notes.txt: corrupt capture at byte offset 0: not a pcap"
    ):
        list(read_datagrams(path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(CaptureError, match="shorter than a capture header"):
        list(read_datagrams(path))


def test_absurd_record_length_names_file_and_offset(tmp_path):
    good = ETH_V4 + ip_udp_packet(Datagram(0, "192.0.2.9", b"ok"))
    data = _pcap([good, good])
    second = 24 + 16 + len(good)
    bad = bytearray(data)
    bad[second + 8 : second + 12] = struct.pack("<I", 10_000_000)
    path = tmp_path / "bad.pcap"
    path.write_bytes(bytes(bad))
    with pytest.raises(CaptureError) as info:
        list(read_datagrams(path))
    assert info.value.offset == second
    assert f"bad.pcap: corrupt capture at byte offset {second}: record length 10000000" in str(
        info.value
    )


def test_file_cut_in_the_middle_of_a_record(tmp_path):
    good = ETH_V4 + ip_udp_packet(Datagram(0, "192.0.2.9", b"ok"))
    data = _pcap([good, good])
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-5])
    with pytest.raises(CaptureError, match=r"byte offset \d+: file ends in the middle of a record"):
        list(read_datagrams(path))


def test_corrupt_pcapng_block(tmp_path):
    path = tmp_path / "x.pcapng"
    write_capture(path, _datagrams(), pcapng=True)
    data = bytearray(path.read_bytes())
    data[-4 - 100 : -100] = b"\xff\xff\xff\x7f"  # somewhere in the last block
    shb_len = struct.unpack_from("<I", data, 4)[0]
    data[shb_len + 4 : shb_len + 8] = struct.pack("<I", 7)  # IDB length not a multiple of 4
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match=rf"byte offset {shb_len}: bad pcapng block length 7"):
        list(read_datagrams(path))


def test_big_endian_microsecond_pcap(tmp_path):
    frame = ETH_V4 + ip_udp_packet(Datagram(0, "192.0.2.9", b"be"))
    data = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    data += struct.pack(">IIII", 5, 7, len(frame), len(frame)) + frame
    path = tmp_path / "be.pcap"
    path.write_bytes(data)
    got, _ = _read_all(path)
    assert got == [(b"be", "192.0.2.9", 50000, 5_000_007_000)]


def test_source_addresses_are_ipv4_mapped_pairs(tmp_path):
    path = tmp_path / "x.pcap"
    write_capture(path, _datagrams("198.51.100.200"))
    batch = next(read_datagrams(path))
    assert batch.source_address.dtype == np.uint64
    assert int(batch.source_address[0, 1]) == 0xFFFF_C633_64C8


def test_unique_addresses_agrees_with_numpy():
    """The compiled scan (few exporters, any interleaving, IPv4 and IPv6 mixed) and its
    fallback past SCAN_DISTINCT_MAX exporters give np.unique's sorted rows and inverse."""
    from collector.datagrams import SCAN_DISTINCT_MAX, unique_addresses

    rng = np.random.default_rng(0)

    def rows(n: int, distinct: int, v6_every: int = 0) -> np.ndarray:
        out = np.zeros((n, 2), np.uint64)
        out[:, 1] = np.uint64(0xFFFF_0000_0000) | rng.integers(0, distinct, n).astype(np.uint64)
        if v6_every:
            out[::v6_every, 0] = np.uint64(0x2001_0DB8 << 32)
        return out

    runs = np.repeat(rows(40, 5), rng.integers(1, 200, 40), axis=0)  # routers in runs
    cases = [
        rows(500, 8),
        rows(500, 8, v6_every=7),
        rows(4096, SCAN_DISTINCT_MAX),
        rows(4096, 4 * SCAN_DISTINCT_MAX, v6_every=3),  # the sorting fallback
        runs,
        rows(1, 1),
        rows(0, 1),
    ]
    for batch in cases:
        uniques, inverse = unique_addresses(batch)
        assert (uniques[inverse] == batch).all()
        want, want_inverse = np.unique(batch, axis=0, return_inverse=True)
        assert uniques.shape == want.shape and (uniques == want).all()
        assert (inverse == want_inverse.reshape(-1)).all()
