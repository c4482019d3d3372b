"""Receive many UDP datagrams per system call with Linux recvmmsg(2), through ctypes.

Python's socket module has no recvmmsg; one ``recvfrom_into`` per datagram costs about
1.5 µs of interpreter time. Here a batch has ``capacity`` fixed slots whose message
headers (buffer pointers, address buffers) are prepared once, when the receiver is
built: a receive call is one ctypes call on the headers from the first free slot on,
with nothing to set up, and however many calls a batch took, one compiled pass
(:meth:`MultiReceiver.gather`) reads the lengths, flags and source addresses the kernel
wrote and packs the payloads back to back. Per datagram, what is left is the kernel's
copy.

Each datagram gets two iovecs: a *head* slot in a dense slab (2 KiB, enough for the
usual 1,500-byte export datagram) and a *tail* slot in a sparse one for what is longer.
The dense slab keeps the common case's memory footprint small (a 16 KiB stride cost a
page and TLB miss per datagram); the tail slab is virtual memory that is touched only by
long datagrams. A datagram longer than both is truncated by the kernel (MSG_TRUNC),
counted, and never decoded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
from dataclasses import dataclass

import numpy as np

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
SOCKADDR_BYTES = 128  # sizeof(struct sockaddr_storage)
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _libc():
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    lib = ctypes.CDLL(path, use_errno=True)
    if not hasattr(lib, "recvmmsg"):
        return None
    lib.recvmmsg.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,  # struct mmsghdr *: the address of the first free slot's header
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    lib.recvmmsg.restype = ctypes.c_int
    return lib


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


@dataclass(frozen=True, slots=True)
class Gathered:
    """The datagrams of the slots filled so far, packed (see :meth:`MultiReceiver.gather`)."""

    offsets: np.ndarray  # int64[n] into the packed buffer
    lengths: np.ndarray  # int64[n]
    sources: np.ndarray  # uint64[n, 2]: IPv6, or IPv4 mapped into ::ffff:0:0/96
    ports: np.ndarray  # uint16[n]
    truncated: int  # datagrams longer than a slot: dropped, to be counted by the caller
    longer: int  # kept datagrams longer than a head slot (see MultiReceiver.gather)


class MultiReceiver:
    """``capacity`` receive slots refilled batch after batch (not thread-safe).

    Fill slots with :meth:`receive` (any number of calls, on any of the sockets), then
    take them out with :meth:`gather`, which also frees every slot for the next batch.
    """

    def __init__(
        self,
        capacity: int = 4096,
        *,
        vlen: int = 1024,
        head_bytes: int = 2048,
        tail_bytes: int = 14_336,
    ) -> None:
        if _LIBC is None:
            raise OSError("recvmmsg is not available")
        self.capacity = capacity
        self.vlen = vlen
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        # Allocated once and reused: fresh memory would cost a page fault per datagram.
        self.heads = np.empty(capacity * head_bytes, dtype=np.uint8)
        self.tails = np.empty(capacity * tail_bytes, dtype=np.uint8)
        self.names = np.zeros((capacity, SOCKADDR_BYTES), np.uint8)
        self._iovecs = (_IoVec * (2 * capacity))()
        self._msgs = (_MMsgHdr * capacity)()
        self._msgs_base = ctypes.addressof(self._msgs)
        self._msg_size = ctypes.sizeof(_MMsgHdr)
        iov_size = ctypes.sizeof(_IoVec)
        iov_base = ctypes.addressof(self._iovecs)
        for i in range(capacity):
            head, tail = self._iovecs[2 * i], self._iovecs[2 * i + 1]
            head.base, head.len = self.heads.ctypes.data + i * head_bytes, head_bytes
            tail.base, tail.len = self.tails.ctypes.data + i * tail_bytes, tail_bytes
            hdr = self._msgs[i].hdr
            hdr.name = self.names.ctypes.data + i * SOCKADDR_BYTES
            hdr.namelen = SOCKADDR_BYTES
            hdr.iov = ctypes.cast(iov_base + 2 * i * iov_size, ctypes.POINTER(_IoVec))
            hdr.iovlen = 2
        # The head iovecs' buffer addresses and lengths, to aim them elsewhere (aim_heads).
        words = np.ctypeslib.as_array(
            ctypes.cast(self._iovecs, ctypes.POINTER(ctypes.c_uint64)), (2 * capacity * 2,)
        )
        self._head_bases, self._head_lengths = words[0::4], words[1::4]
        self._slab_bases = self._head_bases.copy()
        self.stride = head_bytes  # bytes per head slot now (see aim_heads)
        self._no_output = np.empty(0, np.uint8)
        self._heads_target: np.ndarray = self.heads
        # numpy views of the header fields the kernel writes, read by the compiled gather
        raw = np.ctypeslib.as_array(
            ctypes.cast(self._msgs, ctypes.POINTER(ctypes.c_uint8)),
            (capacity * self._msg_size,),
        )
        words = self._msg_size // 4
        self._namelen = raw.view(np.uint32)[_MsgHdr.namelen.offset // 4 :: words][:capacity]
        self._flags = raw.view(np.int32)[_MsgHdr.flags.offset // 4 :: words][:capacity]
        self._len = raw.view(np.uint32)[_MMsgHdr.len.offset // 4 :: words][:capacity]

    def receive(self, fd: int, start_slot: int, max_messages: int) -> int:
        """Fill up to ``max_messages`` free slots from ``start_slot`` with what waits on
        ``fd`` (at most ``vlen`` per call); returns how many (0 when nothing waits)."""
        n = min(self.vlen, self.capacity - start_slot, max_messages)
        if n <= 0:
            return 0
        got = _LIBC.recvmmsg(
            fd, self._msgs_base + start_slot * self._msg_size, n, MSG_DONTWAIT, None
        )
        if got < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        return got

    def aim_heads(self, target: np.ndarray | None, stride: int | None = None) -> None:
        """Receive the next batch's head slots into ``target``, one per ``stride`` bytes
        (at most ``head_bytes``; ``capacity * stride`` bytes: e.g. the journal's memory map,
        where the kernel's copy is then the only one; what is longer goes on in the tail
        slot), or, with None, into the receiver's own slab again. Call with no slot
        filled."""
        if target is None:
            target, stride = self.heads, self.head_bytes
        stride = self.head_bytes if stride is None else stride
        if target is self._heads_target and stride == self.stride:
            return
        if not 0 < stride <= self.head_bytes or len(target) < self.capacity * stride:
            raise ValueError("head slots need 0 < stride <= head_bytes, capacity * stride bytes")
        if target is self.heads:
            self._head_bases[:] = self._slab_bases
        else:
            self._head_bases[:] = target.ctypes.data + stride * np.arange(
                self.capacity, dtype=np.uint64
            )
        self._head_lengths[:] = stride
        self.stride = stride
        self._heads_target = target  # kept alive while the kernel may write into it

    def gather(self, filled: int, packed: np.ndarray | None) -> Gathered:
        """Pack the first ``filled`` slots' payloads into ``packed`` (at least the sum of
        their lengths), or with None leave them in their head slots (offsets then index
        the target given to :meth:`aim_heads`, and a datagram longer than a head slot is
        cut there: see ``Gathered.longer``), and read their lengths and sources; the slots are free
        again afterwards."""
        from collector._slabkernel import gather_slots

        offsets = np.empty(filled, np.int64)
        lengths = np.empty(filled, np.int64)
        sources = np.empty((filled, 2), np.uint64)
        ports = np.empty(filled, np.uint16)
        kept, truncated, longer = gather_slots(
            self.names,
            self._len,
            self._flags,
            self._namelen,
            self._heads_target,
            self.stride,
            self.tails,
            self.tail_bytes,
            filled,
            packed if packed is not None else self._no_output,
            offsets,
            lengths,
            sources,
            ports,
            packed is not None,
        )
        return Gathered(
            offsets[:kept], lengths[:kept], sources[:kept], ports[:kept], truncated, longer
        )

    def received_bytes(self, filled: int) -> int:
        """Bytes the first ``filled`` slots hold (what :meth:`gather` needs to pack them)."""
        return int(self._len[:filled].sum())
