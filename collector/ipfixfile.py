"""Read IPFIX files (RFC 5655): a file is IPFIX messages back to back, nothing else.

Each message becomes one "datagram" of a :class:`~collector.datagrams.DatagramBatch`,
so the normal :class:`~collector.decode.Decoder` decodes it. A file carries no exporter
address: every message is attributed to ``exporter`` (default 0.0.0.0), and its arrival
time is its own export time. A message header that is not IPFIX (version 10, length of
at least 16) or a file cut inside a message raises :class:`IpfixFileError` with the byte
offset — like a corrupt pcap.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from collector.datagrams import DatagramBatch, address_to_pair
from collector.errors import EgressError

HEADER = struct.Struct(">HHI")
CHUNK_BYTES = 16 * 1024 * 1024


class IpfixFileError(EgressError):
    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt IPFIX file at byte offset {offset}: {reason}")
        self.path = str(path)
        self.offset = offset


def is_ipfix_file(path: Path | str) -> bool:
    """True when the file starts like an IPFIX message (version 10, sane length)."""
    with Path(path).open("rb") as f:
        head = f.read(16)
    if len(head) < 16:
        return False
    version, length, _ = HEADER.unpack_from(head)
    return version == 10 and length >= 16


def read_ipfix_file(
    path: Path | str,
    *,
    exporter: str = "0.0.0.0",
    chunk_bytes: int = CHUNK_BYTES,
    hasher=None,
) -> Iterator[DatagramBatch]:
    """Yield batches of the messages of an IPFIX file, in file order."""
    path = Path(path)
    pair = address_to_pair(exporter)
    base = 0
    carry = b""
    with path.open("rb") as f:
        while True:
            data = f.read(chunk_bytes)
            if hasher is not None and data:
                hasher.update(data)
            chunk = carry + data
            if not chunk:
                return
            offsets, lengths, times = [], [], []
            pos = 0
            while pos + 16 <= len(chunk):
                version, length, export_s = HEADER.unpack_from(chunk, pos)
                if version != 10 or length < 16:
                    raise IpfixFileError(path, base + pos, f"version {version}, length {length}")
                if pos + length > len(chunk):
                    break
                offsets.append(pos)
                lengths.append(length)
                times.append(export_s * 1_000_000_000)
                pos += length
            if not data and pos < len(chunk):
                raise IpfixFileError(path, base + pos, "file ends inside a message")
            if offsets:
                n = len(offsets)
                yield DatagramBatch(
                    np.frombuffer(chunk, np.uint8),
                    np.array(offsets, np.int64),
                    np.array(lengths, np.int64),
                    np.tile(np.array(pair, np.uint64), (n, 1)),
                    np.zeros(n, np.uint16),
                    np.array(times, np.int64),
                )
            carry = chunk[pos:]
            base += pos
            if not data:
                return
