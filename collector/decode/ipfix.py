"""IPFIX (RFC 7011): the message header and the (options) template sets.

Header (16 bytes): version 10, length (of the whole message), export time (unix
seconds), sequence number (data records sent before this message, in this observation
domain), observation domain id. Set ids: 2 = templates, 3 = options templates,
4-255 reserved, 256 and above = data for that template id.

Template records (§3.4.1): a field specifier whose element id has the top bit set is
enterprise-specific and is followed by a 4-byte Private Enterprise Number; such fields are
skipped by their length. Length 65535 means variable length (§7). A template record with
field count 0 is a withdrawal (§8.1); a withdrawal whose template id equals the set id
(2 or 3) withdraws all (options) templates of the domain. A message longer than
its datagram is dropped; a datagram longer than its message is read to its end (one
message per datagram over UDP, as Wireshark reads it) and counted.
"""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np

from collector.datagrams import DatagramBatch
from collector.decode.flowsets import Dialect, Headers, Withdrawal, gather_headers
from collector.decode.templates import ExporterKey, Limits, Template

VERSION = 10
HEADER_LEN = 16
TEMPLATE_SET = 2
OPTIONS_SET = 3
HEADER_DTYPE = np.dtype(
    [
        ("version", ">u2"),
        ("length", ">u2"),
        ("export_time", ">u4"),
        ("sequence", ">u4"),
        ("domain", ">u4"),
    ]
)
assert HEADER_DTYPE.itemsize == HEADER_LEN

_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
_I = struct.Struct(">I")


def parse_headers(batch: DatagramBatch, rows: np.ndarray, errors: Counter) -> Headers:
    rows = np.asarray(rows, np.int64)
    short = batch.lengths[rows] < HEADER_LEN
    if short.any():
        errors["ipfix_short_header"] += int(short.sum())
        rows = rows[~short]
    headers = gather_headers(batch, rows, HEADER_DTYPE)
    length = headers["length"].astype(np.int64)
    available = batch.lengths[rows]
    bad = (length < HEADER_LEN) | (length > available)
    if bad.any():
        errors["ipfix_bad_message_length"] += int(bad.sum())
        rows, headers, length, available = rows[~bad], headers[~bad], length[~bad], available[~bad]
    longer = int((available > length).sum())
    if longer:
        # One message per datagram (RFC 7011 §10.3.3): the datagram's end bounds the
        # sets, as Wireshark reads it; the mismatch is counted.
        errors["ipfix_datagram_longer_than_message"] += longer
    starts = batch.offsets[rows] + HEADER_LEN
    return Headers(
        rows=rows,
        starts=starts,
        ends=batch.offsets[rows] + available,
        export_ms=headers["export_time"].astype(np.int64) * 1000,
        sys_uptime=None,
        sequence=headers["sequence"].astype(np.int64),
        domain=headers["domain"].astype(np.int64),
    )


def parse_template_set(
    data: bytes,
    exporter: ExporterKey,
    domain: int,
    options: bool,
    limits: Limits,
    errors: Counter,
) -> list[Template | Withdrawal]:
    """Templates and withdrawals of one (options) template set body (header excluded)."""
    out: list[Template | Withdrawal] = []
    set_id = OPTIONS_SET if options else TEMPLATE_SET
    pos = 0
    end = len(data)
    while pos + 4 <= end:
        tid, count = _HH.unpack_from(data, pos)
        if count == 0:
            pos += 4
            if tid == set_id:
                out.append(Withdrawal(None, options))
            elif tid >= 256:
                out.append(Withdrawal(tid, options))
            elif tid == 0:
                break  # padding
            else:
                errors["ipfix_bad_template_id"] += 1
                break
            continue
        if tid < 256:
            if tid == 0 and not any(data[pos:end]):
                break  # padding
            errors["ipfix_bad_template_id"] += 1
            break
        if count > limits.fields_per_template:
            errors["template_too_many_fields"] += 1
            break
        scope = 0
        if options:
            if pos + 6 > end:
                errors["ipfix_template_truncated"] += 1
                break
            scope = _HHH.unpack_from(data, pos)[2]
            pos += 6
            if scope == 0 or scope > count:
                errors["ipfix_options_template_bad_scope"] += 1
                break
        else:
            pos += 4
        fields = []
        for _ in range(count):
            if pos + 4 > end:
                break
            element, length = _HH.unpack_from(data, pos)
            pos += 4
            pen = 0
            if element & 0x8000:
                if pos + 4 > end:
                    pos = end + 1
                    break
                element &= 0x7FFF
                pen = _I.unpack_from(data, pos)[0]
                pos += 4
            fields.append((element, length, pen))
        if len(fields) < count or pos > end:
            errors["ipfix_template_truncated"] += 1
            break
        out.append(Template(exporter, VERSION, domain, tid, tuple(fields), scope, options))
    return out


DIALECT = Dialect(
    version=VERSION,
    name="ipfix",
    header_len=HEADER_LEN,
    template_set=TEMPLATE_SET,
    options_set=OPTIONS_SET,
    parse_headers=parse_headers,
    parse_template_set=parse_template_set,
    counts_records=True,
)
