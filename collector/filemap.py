"""A file mapped for writing, with address space reserved for it to grow into.

The journal on tmpfs is written through maps of its segment files (collector/journal.py),
whose page table entries are populated ahead so that no write faults. A spare file grows
while the collector runs (collector/spare_reserve.py); mapped with Python's ``mmap``, a
grown file had to be mapped again whole: its pages populated again (~0.4 s per GB) and
the smaller map torn down, on the reserve's thread, over GBs, for a few MB more. Here the
map is made once over more address space than the file holds (address space costs
nothing until populated; pages past the end of the file are never touched) and growing
populates only what was added.

The calls go through ctypes, which lets go of the GIL while the kernel works:
``mmap.madvise`` keeps it (populating 1 GiB held it 480 ms here, Python 3.11), during
which the receiving thread could not run.

Views of the map (numpy arrays) keep it alive: it is unmapped when the last one goes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

import numpy as np

MADV_DONTNEED = 4
MADV_POPULATE_WRITE = 23  # Linux 5.14+
POPULATE_STEP = 1 << 20  # bytes populated or released per call (see FileMap.extend)
RESERVE_BYTES = 64 << 30  # address space a map reserves, at least (the file may grow to it)
PROT_READ, PROT_WRITE, MAP_SHARED = 1, 2, 1
MAP_FAILED = ctypes.c_void_p(-1).value


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library with the prototypes used here; None where there is none."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    lib = ctypes.CDLL(path, use_errno=True)
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.madvise.restype = ctypes.c_int
    lib.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    lib.mmap.restype = ctypes.c_void_p
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.munmap.restype = ctypes.c_int
    return lib


class FileMap:
    """A file mapped shared and writable (:meth:`of`); :attr:`view` is its populated part."""

    def __init__(self, address: int, reserved: int) -> None:
        self.address = address
        self.reserved = reserved
        self.populated = 0

    @classmethod
    def of(cls, fd: int) -> FileMap | None:
        """Map ``fd``'s file with its pages populated; None when it is empty, when maps
        cannot be made here, or when its pages cannot be had (see :meth:`extend`)."""
        lib = libc()
        size = os.fstat(fd).st_size
        if lib is None or size == 0:
            return None
        reserved = max(RESERVE_BYTES, 2 * size)
        address = lib.mmap(None, reserved, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if address in (None, MAP_FAILED):
            return None
        mapped = cls(address, reserved)
        return mapped if mapped.extend(size) else None

    def __len__(self) -> int:
        return self.populated

    @property
    def view(self) -> np.ndarray:
        """The populated part, as bytes. Made on each call, never kept here: a view holds
        its map, and a map holding its view would be a cycle, unmapped (and the pages of
        a deleted file freed) only whenever the cycle collector gets to it."""
        return np.asarray(_Region(self, self.populated))

    def extend(self, size: int) -> bool:
        """Populate the map's page table entries up to ``size`` bytes (the file's size, no
        more: a page past the end of the file cannot be had), then view that much. False
        when the pages cannot be had, and then the map must not be written (a write would
        end the process with SIGBUS rather than fail); an older kernel that does not know
        the advice leaves the pages to fault in as they are written.

        In steps of ``POPULATE_STEP``: the advice holds the process's memory-map lock, which
        the receiving thread needs whenever it maps or unmaps memory (numpy's large arrays);
        one call over a whole spare held it for a tenth of a second or more."""
        if size <= self.populated:
            return True
        if size > self.reserved:
            return False
        lib = libc()
        assert lib is not None
        for start in range(self.populated, size, POPULATE_STEP):
            length = min(POPULATE_STEP, size - start)
            if lib.madvise(self.address + start, length, MADV_POPULATE_WRITE) != 0:
                if ctypes.get_errno() != errno.EINVAL:
                    return False
                break
        self.populated = size
        return True

    def release_pages(self) -> None:
        """Drop the map's page table entries (the file's pages stay: a view still reading
        the map faults them back in, unchanged), so that the ``munmap`` when the last view
        goes is cheap. For a map about to be forgotten."""
        lib = libc()
        assert lib is not None
        for start in range(0, self.populated, POPULATE_STEP):
            lib.madvise(
                self.address + start, min(POPULATE_STEP, self.populated - start), MADV_DONTNEED
            )

    def __del__(self) -> None:
        lib = libc()
        if lib is not None and self.address:
            lib.munmap(self.address, self.reserved)
            self.address = 0


class _Region:
    """``size`` bytes of a FileMap for numpy: an array of it keeps the map alive (its
    base is this object, which holds the map)."""

    def __init__(self, owner: FileMap, size: int) -> None:
        self.owner = owner
        self.__array_interface__ = {
            "shape": (size,),
            "typestr": "|u1",
            "data": (owner.address, False),
            "version": 3,
        }
