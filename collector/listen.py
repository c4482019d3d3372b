"""UDP listeners: receive export datagrams in batches, and say what the kernel dropped.

One non-blocking socket per configured address, a large receive buffer, and a receive
loop that drains every ready socket into one slab: with Linux recvmmsg (through ctypes,
collector/recvmmsg.py) up to 1,024 datagrams per system call into fixed slots, else one
``recvfrom_into`` per datagram (~1.5 µs of interpreter time each). Each batch gets a
fresh slab (lazily mapped: only the pages written cost memory), so decoders and the
attribution thread may keep views into it.

Kernel receive-buffer drops are read from /proc/net/udp{,6} (the ``drops`` column of our
sockets, found by inode), which counts what never reached us.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from collector.datagrams import DatagramBatch, address_to_pair
from collector.errors import EgressError
from collector.recvmmsg import Gathered, MultiReceiver
from collector.recvmmsg import available as recvmmsg_available

SLAB_BYTES = 8 * 1024 * 1024
# recvmmsg path: one slot per datagram. Export datagrams fit a 1500 or 9000-byte MTU; a
# longer one is truncated by the kernel, counted (listener.truncated) and dropped.
SLOT_BYTES = 16_384  # longest datagram the recvmmsg path takes (head + tail slots)
HEAD_BYTES = 2_048  # the dense part of a slot: a usual export datagram fits it whole
RECVMMSG_VLEN = 1024
MAX_BATCH_DATAGRAMS = 4096
# Lingering for a fuller batch (recvmmsg path): up to LINGER_BATCH datagrams, for at most
# LINGER_MAX_SECONDS, and never longer than the socket buffer could hold at
# LINGER_WORST_RATE datagrams/s of LINGER_WORST_TRUESIZE bytes each (the kernel charges a
# datagram's whole buffer, ~2-4 KiB on loopback for a 1,500-byte one, to the socket).
LINGER_BATCH = 4096
LINGER_MAX_SECONDS = 0.020
LINGER_STEP_SECONDS = 0.0005
LINGER_WORST_RATE = 400_000
LINGER_WORST_TRUESIZE = 4096
PACKED_RING = 4
PACKED_BYTES = MAX_BATCH_DATAGRAMS * 1_500  # a ring buffer's size, unless a batch needs more
MAX_DATAGRAM = 65_535


class ReceiveTarget(Protocol):
    """Memory a batch may be received into instead of the listener's own (the journal's
    map: collector/journal.py); each method may decline with None."""

    def slot_area(self, slots: int, stride: int) -> np.ndarray | None:
        """``slots * stride`` bytes to receive the batch's datagrams into, one per stride."""

    def payload_area(self, datagrams: int, payload_bytes: int) -> np.ndarray | None:
        """``payload_bytes`` to pack the batch's datagrams into, back to back."""


SO_REUSEPORT = getattr(socket, "SO_REUSEPORT", 15)
SO_RCVBUFFORCE = 33


class ListenError(EgressError):
    """A socket could not be opened (address in use, not local, permission...)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class UdpListener:
    """Non-blocking UDP sockets bound to ``endpoints``, read in batches."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        receive_buffer_bytes: int = 64 * 1024 * 1024,
        reuse_port: bool = False,
        slab_bytes: int = SLAB_BYTES,
        packed_ring: int = PACKED_RING,
    ) -> None:
        self.endpoints = list(endpoints)
        # How many batches' buffers stay valid: a caller that is done with each batch
        # before the next receive (the collector) asks for 1, which keeps the one buffer
        # warm in the caches instead of cycling through ~24 MB.
        self.packed_ring = max(1, packed_ring)
        self.slab_bytes = max(slab_bytes, 2 * MAX_DATAGRAM)
        self.sockets: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._pairs: dict[str, tuple[int, int]] = {}
        try:
            for ep in self.endpoints:
                self.sockets.append(self._open(ep, receive_buffer_bytes, reuse_port))
        except BaseException:
            self.close()
            raise
        for sock in self.sockets:
            self._selector.register(sock, selectors.EVENT_READ)
        self.receive_buffer_bytes = [
            s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for s in self.sockets
        ]
        self.linger_seconds = linger_budget(min(self.receive_buffer_bytes, default=0))
        self._multi = (
            MultiReceiver(
                MAX_BATCH_DATAGRAMS,
                vlen=RECVMMSG_VLEN,
                head_bytes=HEAD_BYTES,
                tail_bytes=SLOT_BYTES - HEAD_BYTES,
            )
            if recvmmsg_available()
            else None
        )
        self.truncated = 0  # datagrams longer than SLOT_BYTES (recvmmsg path), dropped
        self._slot_stride = HEAD_BYTES  # bytes per slot received into the caller's memory
        self._packed: list[np.ndarray] = []
        self._packed_turn = 0

    @staticmethod
    def _open(ep: Endpoint, rcvbuf: int, reuse_port: bool) -> socket.socket:
        family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, SO_REUSEPORT, 1)
            try:  # root may exceed net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((ep.host, ep.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ListenError(f"cannot listen on {ep}: {reason}") from None
        return sock

    def bound(self) -> list[Endpoint]:
        """The endpoints actually bound (port 0 resolves to the kernel's choice)."""
        return [Endpoint(s.getsockname()[0], s.getsockname()[1]) for s in self.sockets]

    def receive(
        self, timeout: float, max_datagrams: int = 100_000, *, into: ReceiveTarget | None = None
    ) -> DatagramBatch:
        """Wait up to ``timeout`` s for data, then drain the ready sockets into one batch.

        ``into`` may offer memory for the batch (the journal's map): slots to receive the
        datagrams straight into, else room to pack them into; where it offers neither, they
        go into the listener's own reused buffers."""
        if self._multi is not None:
            return self._receive_many(timeout, min(max_datagrams, MAX_BATCH_DATAGRAMS), into)
        # np.empty maps fresh pages lazily: only the bytes received are ever touched.
        slab = np.empty(self.slab_bytes, dtype=np.uint8)
        view = memoryview(slab)
        offsets: list[int] = []
        lengths: list[int] = []
        sources: list[tuple[int, int]] = []
        ports: list[int] = []
        times: list[int] = []
        used = 0
        pairs = self._pairs
        ready = self._selector.select(timeout)
        if not ready:
            return _empty()
        now = time.time_ns()
        active = [key.fileobj for key, _ in ready]
        while active and used + MAX_DATAGRAM <= len(slab) and len(offsets) < max_datagrams:
            still = []
            for sock in active:
                # Drain this socket up to a fair share before moving to the next one.
                for _ in range(256):
                    if used + MAX_DATAGRAM > len(slab) or len(offsets) >= max_datagrams:
                        break
                    try:
                        n, addr = sock.recvfrom_into(view[used:], MAX_DATAGRAM)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # e.g. ICMP-triggered errors on some kernels: keep reading
                    host = addr[0]
                    pair = pairs.get(host)
                    if pair is None:
                        pair = pairs[host] = address_to_pair(host.split("%", 1)[0])
                    offsets.append(used)
                    lengths.append(n)
                    sources.append(pair)
                    ports.append(addr[1])
                    times.append(now)
                    used += n
                else:
                    still.append(sock)
            active = still
        if not offsets:
            return _empty()
        return DatagramBatch(
            slab,
            np.array(offsets, dtype=np.int64),
            np.array(lengths, dtype=np.int64),
            np.array(sources, dtype=np.uint64).reshape(-1, 2),
            np.array(ports, dtype=np.uint16),
            np.array(times, dtype=np.int64),
        )

    def _packed_buffer(self, size: int) -> np.ndarray:
        """A buffer from a ring of ``packed_ring`` reused ones (fresh memory costs a page
        fault per 4 KiB). A batch's buffer is overwritten ``packed_ring`` receives later."""
        turn = self._packed_turn % self.packed_ring
        self._packed_turn += 1
        if turn >= len(self._packed) or len(self._packed[turn]) < size:
            buffer = np.empty(max(size, PACKED_BYTES), dtype=np.uint8)
            if turn >= len(self._packed):
                self._packed.append(buffer)
            else:
                self._packed[turn] = buffer
        return self._packed[turn][:size]

    def _receive_many(
        self, timeout: float, max_datagrams: int, into: ReceiveTarget | None
    ) -> DatagramBatch:
        """recvmmsg path: fill the receiver's slots from the ready sockets, linger for a
        fuller batch while the buffers allow it, then gather them in one compiled pass."""
        ready = self._selector.select(timeout)
        if not ready:
            return _empty()
        multi = self._multi
        assert multi is not None
        stride = self._slot_stride
        slots = into.slot_area(multi.capacity, stride) if into is not None else None
        multi.aim_heads(slots, stride)
        now = time.time_ns()
        limit = min(max_datagrams, multi.capacity)
        filled = self._fill([key.fd for key, _ in ready], 0, limit)
        if filled < min(LINGER_BATCH, limit) and self.linger_seconds > 0:
            # Every batch costs the same fixed work downstream (a journal write, decoder
            # and kernel calls, ~0.5-1 ms in all): a few more datagrams per batch cost less
            # than a batch each. The socket buffers hold what arrives meanwhile.
            until = time.monotonic() + self.linger_seconds
            fds = [s.fileno() for s in self.sockets]
            while filled < LINGER_BATCH and time.monotonic() < until:
                time.sleep(LINGER_STEP_SECONDS)
                filled = self._fill(fds, filled, limit)
        if not filled:
            return _empty()
        # Received into the journal's memory, the datagrams stay in their slots; else they
        # are packed back to back (the slots are refilled at once).
        if slots is not None:
            got = multi.gather(filled, None)
            if len(got.lengths):
                self._slot_stride = slot_stride(int(got.lengths.max()), multi.head_bytes)
            if not got.longer:  # each datagram whole in its slot: no copy at all
                return self._batch(slots, got, now)
            # Some datagram's end is in a tail slot: pack them all, here (the slots are
            # where the journal would pack them).
            size = multi.received_bytes(filled)
            packed = self._packed_buffer(size)
        else:
            size = multi.received_bytes(filled)
            packed = into.payload_area(filled, size) if into is not None else None
            if packed is None:
                packed = self._packed_buffer(size)
        return self._batch(packed, multi.gather(filled, packed), now)

    def _batch(self, buffer: np.ndarray, got: Gathered, now: int) -> DatagramBatch:
        self.truncated += got.truncated
        if not len(got.lengths):
            return _empty()
        return DatagramBatch(
            buffer,
            got.offsets,
            got.lengths,
            got.sources,
            got.ports,
            np.full(len(got.lengths), now, dtype=np.int64),
        )

    def _fill(self, fds: list[int], filled: int, limit: int) -> int:
        """Receive from ``fds`` into slots ``filled``.. until each is drained or the slots
        up to ``limit`` are full; returns the slots filled in all."""
        multi = self._multi
        assert multi is not None
        active = fds
        while active and filled < limit:
            still = []
            for fd in active:
                want = min(multi.vlen, limit - filled)
                got = multi.receive(fd, filled, want)
                filled += got
                if got == want and filled < limit:
                    still.append(fd)  # more may wait: come back after the others
            active = still
        return filled

    def warm_up(self) -> None:
        """Load the compiled gather and fault in the packed buffers before the first
        datagram (see collector/warmup.py): first touches of fresh memory cost ~0.1 s
        for the first full batches here, with datagrams waiting meanwhile."""
        if self._multi is not None:
            self._multi.gather(0, np.empty(0, np.uint8))
            for _ in range(self.packed_ring):
                self._packed_buffer(PACKED_BYTES).fill(0)

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for our sockets since they opened (receive buffer full)."""
        inodes = {os.fstat(s.fileno()).st_ino for s in self.sockets}
        return sum(drops for inode, drops in _proc_udp_drops().items() if inode in inodes)

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        self.sockets = []
        self._selector.close()


def slot_stride(longest: int, head_bytes: int) -> int:
    """Bytes per receive slot for the next batch: the longest datagram of the last one,
    rounded up to a cache line (a slot's unused end is journal memory wasted: 2 KiB slots
    for 1,464-byte datagrams took 40 % more), at most ``head_bytes``. A longer datagram
    sends its batch through the packing path, and the next slots fit it."""
    return max(64, min(head_bytes, -(-longest // 64) * 64))


def linger_budget(receive_buffer_bytes: int) -> float:
    """How long a receive may wait for a fuller batch: what half the socket buffer (as
    SO_RCVBUF reports it, the kernel's doubled figure) holds at the worst rate, at most
    LINGER_MAX_SECONDS; 0 when that is less than one sleep step (a small buffer)."""
    seconds = receive_buffer_bytes / 2 / (LINGER_WORST_RATE * LINGER_WORST_TRUESIZE)
    seconds = min(seconds, LINGER_MAX_SECONDS)
    return seconds if seconds >= LINGER_STEP_SECONDS else 0.0


def _empty() -> DatagramBatch:
    return DatagramBatch(
        np.zeros(0, np.uint8),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros((0, 2), np.uint64),
        np.zeros(0, np.uint16),
        np.zeros(0, np.int64),
    )


def _proc_udp_drops() -> dict[int, int]:
    """inode -> drops, from /proc/net/udp and /proc/net/udp6 (last column)."""
    out: dict[int, int] = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 13:
                        out[int(parts[9])] = int(parts[-1])
        except OSError:
            continue
    return out


SO_ATTACH_REUSEPORT_CBPF = 51
_SKF_NET_OFF = -0x100000
_BPF_LD_W_ABS = 0x20
_BPF_ALU_MOD_K = 0x94
_BPF_RET_A = 0x16


def attach_source_hash(sock: socket.socket, groups: int) -> None:
    """Steer each sender to one socket of a SO_REUSEPORT group by its source address.

    The kernel's default reuseport hash uses the 4-tuple, so a router that changes its
    source port would move to another worker (whose template state it does not have).
    This classic BPF program picks the socket from the low 32 bits of the source address
    instead: ``return src_ip % groups``.
    """
    import ctypes

    family_v6 = sock.family == socket.AF_INET6
    src_offset = _SKF_NET_OFF + (20 if family_v6 else 12)  # last word of the IPv6 source
    program = [
        (_BPF_LD_W_ABS, 0, 0, src_offset & 0xFFFFFFFF),
        (_BPF_ALU_MOD_K, 0, 0, groups),
        (_BPF_RET_A, 0, 0, 0),
    ]

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]

    filters = (SockFilter * len(program))(*[SockFilter(*ins) for ins in program])
    fprog = SockFprog(len(program), filters)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(memoryview(fprog).cast("B")))
