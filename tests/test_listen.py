"""UDP listeners on loopback: batched receive (recvmmsg and the fallback), sources,
oversize datagrams and kernel drop counting."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from collector.datagrams import pair_to_address
from collector.listen import HEAD_BYTES, SLOT_BYTES, Endpoint, UdpListener, slot_stride


@pytest.fixture(params=["recvmmsg", "recvfrom"])
def listener(request):
    lst = UdpListener([Endpoint("127.0.0.1", 0), Endpoint("::1", 0)], receive_buffer_bytes=4 << 20)
    if request.param == "recvfrom":
        lst._multi = None
    elif lst._multi is None:
        pytest.skip("recvmmsg not available on this platform")
    yield lst
    lst.close()


def _drain(lst, expected, timeout=5.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        b = lst.receive(0.2)
        for i in range(len(b)):
            got.append(
                (
                    bytes(b.payload(i)),
                    str(pair_to_address(*b.source_address[i])),
                    int(b.source_port[i]),
                )
            )
    return got


def test_receives_ipv4_and_ipv6_with_their_sources(listener):
    v4, v6 = listener.bound()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.1.9", 0))
    b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    b.bind(("::1", 0))
    sent = []
    for i in range(300):
        a.sendto(bytes([i % 256]) * (1 + i), (v4.host, v4.port))
        sent.append((bytes([i % 256]) * (1 + i), "127.0.1.9", a.getsockname()[1]))
        b.sendto(b"six" * (i + 1), (v6.host, v6.port))
        sent.append((b"six" * (i + 1), "::1", b.getsockname()[1]))
    got = _drain(listener, len(sent))
    assert sorted(got) == sorted(sent)
    a.close()
    b.close()


def test_oversize_datagrams_are_counted_not_decoded():
    listener = UdpListener([Endpoint("127.0.0.1", 0)])
    if listener._multi is None:
        pytest.skip("recvmmsg not available on this platform (the recvfrom path reads any size)")
    v4 = listener.bound()[0]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"a" * (SLOT_BYTES + 100), (v4.host, v4.port))
    s.sendto(b"ok", (v4.host, v4.port))
    got = _drain(listener, 1)
    assert [g[0] for g in got] == [b"ok"]
    assert listener.truncated == 1
    s.close()
    listener.close()


def test_kernel_drops_are_read_from_proc():
    lst = UdpListener([Endpoint("127.0.0.1", 0)], receive_buffer_bytes=65_536)
    try:
        # Shrink below the configured minimum to force overflow quickly.
        lst.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        port = lst.bound()[0].port
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(2000):
            s.sendto(b"x" * 1400, ("127.0.0.1", port))
        s.close()
        assert lst.kernel_drops() > 0
        received = len(_drain(lst, 2000, timeout=1.0))
        assert received + lst.kernel_drops() == 2000
    finally:
        lst.close()


def test_address_in_use_is_a_clear_error():
    from collector.listen import ListenError

    first = UdpListener([Endpoint("127.0.0.1", 0)])
    try:
        port = first.bound()[0].port
        with pytest.raises(
            ListenError, match=f"cannot listen on 127.0.0.1:{port}: address already in use"
        ):
            UdpListener([Endpoint("127.0.0.1", port)])
    finally:
        first.close()


def test_datagrams_longer_than_the_head_slot_come_back_whole(listener):
    """A datagram spilling from its 2 KiB head slot into its tail slot is reassembled."""
    v4 = listener.bound()[0]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sizes = [100, 2047, 2048, 2049, 5000, 9000, 16_000, 300]
    sent = [bytes([k]) * n for k, n in enumerate(sizes)]
    for p in sent:
        s.sendto(p, (v4.host, v4.port))
    got = _drain(listener, len(sent))
    assert [g[0] for g in got] == sent
    s.close()


def test_empty_datagrams_are_delivered_not_lost(listener):
    """A zero-length datagram reaches the decoder (which counts it as too short)."""
    v4 = listener.bound()[0]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for payload in (b"", b"x", b""):
        s.sendto(payload, (v4.host, v4.port))
    got = _drain(listener, 3)
    assert sorted(g[0] for g in got) == [b"", b"", b"x"]
    s.close()


def test_lingering_never_outlasts_what_the_socket_buffer_holds():
    from collector.listen import (
        LINGER_MAX_SECONDS,
        LINGER_WORST_RATE,
        LINGER_WORST_TRUESIZE,
        linger_budget,
    )

    assert linger_budget(2 * 212_992) == 0.0  # a default-sized buffer: no lingering
    assert linger_budget(2 * 64 * 1024 * 1024) == LINGER_MAX_SECONDS
    four_mib = 2 * 4 * 1024 * 1024
    budget = linger_budget(four_mib)
    assert 0 < budget < LINGER_MAX_SECONDS
    assert budget * LINGER_WORST_RATE * LINGER_WORST_TRUESIZE <= four_mib / 2


def test_the_warm_up_datagrams_exercise_every_protocol_and_decode_cleanly():
    """What the collector runs through its kernels before receiving (collector/warmup.py):
    v5, v9 and IPFIX, IPv4 and IPv6, every record decoded, nothing dropped."""
    from collections import Counter

    from collector.decode import Decoder
    from collector.warmup import sample_datagrams

    result = Decoder().decode(sample_datagrams())
    assert result.datagrams_by_version == Counter({5: 1, 9: 1, 10: 1})
    assert not result.dropped
    assert sorted(result.flows.ip_version.tolist()) == [4, 4, 4, 6]
    assert result.flows.octet_delta_count.tolist() == [100] * 4
    assert (result.flows.flow_end_milliseconds > result.flows.flow_start_milliseconds).all()


class _Offers:
    """A receive target (as the journal is) over one array, offering slots, room to pack,
    or nothing; it records what it was asked."""

    def __init__(self, slots: bool, pack: bool) -> None:
        self.memory = np.zeros(16 << 20, np.uint8)
        self.slots, self.pack = slots, pack
        self.asked: list[tuple] = []

    def slot_area(self, slots, stride):
        self.asked.append(("slots", slots, stride))
        return self.memory[64 : 64 + slots * stride] if self.slots else None

    def payload_area(self, datagrams, payload_bytes):
        self.asked.append(("pack", datagrams, payload_bytes))
        return self.memory[100 : 100 + payload_bytes] if self.pack else None


def test_slots_are_as_long_as_the_last_batch_needed():
    assert slot_stride(1464, 2048) == 1472  # NetFlow v5, 30 records
    assert slot_stride(1, 2048) == 64
    assert slot_stride(1472, 2048) == 1472
    assert slot_stride(5000, 2048) == 2048


@pytest.mark.parametrize(
    "slots, pack", [(True, False), (False, True), (False, False)], ids=["slots", "pack", "own"]
)
def test_a_batch_is_received_where_the_caller_offers(slots, pack):
    """The collector has the listener receive straight into the journal's map (slots), or
    pack into it (see Journal.slot_area, Journal.payload_area); else it uses its own
    buffers. Datagrams longer than a slot's head are packed whole into the listener's own
    buffer even when slots are offered."""
    lst = UdpListener([Endpoint("127.0.0.1", 0)], receive_buffer_bytes=4 << 20)
    if lst._multi is None:
        pytest.skip("recvmmsg not available on this platform")
    target = lst.bound()[0]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    offers = _Offers(slots, pack)
    for long in (False, True):
        sent = [bytes([long, i]) * (50 + i) for i in range(40)]
        if long:
            sent[7] = b"L" * (HEAD_BYTES + 500)
        for p in sent:
            s.sendto(p, (target.host, target.port))
        got = []
        deadline = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < deadline:
            b = lst.receive(0.2, into=offers)
            got += [bytes(b.payload(i)) for i in range(len(b))]
            if not len(b):
                continue
            in_memory = np.shares_memory(b.buffer, offers.memory)
            whole_in_slots = slots and not long
            assert in_memory == (whole_in_slots or pack)
            if whole_in_slots:  # slots as long as the longest datagram of the last batch
                stride = int(b.offsets[1] - b.offsets[0])
                assert stride in (HEAD_BYTES, 192) and (b.offsets % stride == 0).all()
            elif pack:
                assert offers.asked[-1] == ("pack", len(b), int(b.lengths.sum()))
        assert got == sent
    s.close()
    lst.close()
