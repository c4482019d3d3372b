"""FileMap: a file mapped with room to grow, populated and released without the GIL."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from collector.filemap import FileMap
from tests.smaps import mapping_fields


def _file(path: Path, size: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.posix_fallocate(fd, 0, size)
    return fd


def test_a_map_grows_in_place_and_only_its_addition_is_populated(tmp_path):
    fd = _file(tmp_path / "f", 1 << 20)
    try:
        mapped = FileMap.of(fd)
        assert mapped is not None and len(mapped) == len(mapped.view) == 1 << 20
        region = mapping_fields(mapped.address)
        assert region["Size"] == mapped.reserved  # address space for growth...
        assert region["Rss"] == 1 << 20  # ...populated only where the file is
        first = mapped.view
        first[-3:] = np.frombuffer(b"end", np.uint8)
        os.posix_fallocate(fd, 1 << 20, 1 << 20)
        assert mapped.extend(2 << 20)
        assert mapped.view.ctypes.data == first.ctypes.data  # the same map, not a new one
        assert mapping_fields(mapped.address)["Rss"] == 2 << 20
        assert bytes(mapped.view[(1 << 20) - 3 : 1 << 20]) == b"end"
        assert os.pread(fd, 3, (1 << 20) - 3) == b"end"  # written through to the file
        assert not mapped.extend(mapped.reserved + 4096)  # past its address space: refused
    finally:
        os.close(fd)


def test_released_pages_still_read_and_the_last_view_unmaps(tmp_path):
    fd = _file(tmp_path / "f", 1 << 20)
    mapped = FileMap.of(fd)
    os.close(fd)
    assert mapped is not None
    view = mapped.view[10:20]
    view[:] = np.arange(10, dtype=np.uint8)
    address = mapped.address
    mapped.release_pages()
    assert mapping_fields(address)["Rss"] == 0
    assert view.tolist() == list(range(10))  # faulted back in from the file, unchanged
    del mapped
    assert mapping_fields(address) is not None  # a view of it is alive: still mapped
    del view  # the last reference: unmapped at once (no cycle left to the collector)
    assert mapping_fields(address) is None


def test_an_empty_file_is_not_mapped(tmp_path):
    fd = _file(tmp_path / "f", 4096)
    os.ftruncate(fd, 0)
    try:
        assert FileMap.of(fd) is None
    finally:
        os.close(fd)
