"""NetFlow v9 (RFC 3954): the export packet header and the (options) template flowsets.

Header (20 bytes): version, count (records of all kinds in the packet; not trusted),
sysUpTime (ms), unix_secs, package sequence (counts export packets), source id (the
observation domain). Flowset ids: 0 = templates, 1 = options templates, 2-255 reserved,
256 and above = data for that template id.

Options templates (RFC 3954 §6.1) carry *scope* fields whose types are scope kinds
(1 System, 2 Interface, 3 Line Card, 4 Cache, 5 Template), not field types: the decoder
never reads them as elements. The data path is shared with IPFIX
(:mod:`collector.decode.flowsets`).
"""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np

from collector.datagrams import DatagramBatch
from collector.decode.flowsets import Dialect, Headers, Withdrawal, gather_headers
from collector.decode.templates import ExporterKey, Limits, Template

VERSION = 9
HEADER_LEN = 20
TEMPLATE_SET = 0
OPTIONS_SET = 1
HEADER_DTYPE = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),
        ("sys_uptime", ">u4"),
        ("unix_secs", ">u4"),
        ("sequence", ">u4"),
        ("source_id", ">u4"),
    ]
)
assert HEADER_DTYPE.itemsize == HEADER_LEN

_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")


def parse_headers(batch: DatagramBatch, rows: np.ndarray, errors: Counter) -> Headers:
    rows = np.asarray(rows, np.int64)
    short = batch.lengths[rows] < HEADER_LEN
    if short.any():
        errors["v9_short_header"] += int(short.sum())
        rows = rows[~short]
    headers = gather_headers(batch, rows, HEADER_DTYPE)
    starts = batch.offsets[rows] + HEADER_LEN
    ends = batch.offsets[rows] + batch.lengths[rows]
    unix_secs = headers["unix_secs"].astype(np.int64)
    return Headers(
        rows=rows,
        starts=starts,
        ends=ends,
        export_ms=unix_secs * 1000,
        sys_uptime=headers["sys_uptime"].astype(np.int64),
        sequence=headers["sequence"].astype(np.int64),
        domain=headers["source_id"].astype(np.int64),
    )


def parse_template_set(
    data: bytes,
    exporter: ExporterKey,
    domain: int,
    options: bool,
    limits: Limits,
    errors: Counter,
) -> list[Template | Withdrawal]:
    """Templates of one template (or options template) flowset body (header excluded)."""
    out: list[Template | Withdrawal] = []
    pos = 0
    end = len(data)
    while pos + 4 <= end:
        if not options:
            tid, count = _HH.unpack_from(data, pos)
            if tid == 0 and count == 0:
                break  # padding
            pos += 4
            if tid < 256:
                errors["v9_bad_template_id"] += 1
                break
            if count == 0:
                errors["v9_empty_template"] += 1
                continue
            if count > limits.fields_per_template:
                errors["template_too_many_fields"] += 1
                break
            if pos + 4 * count > end:
                errors["v9_template_truncated"] += 1
                break
            raw = struct.unpack_from(f">{2 * count}H", data, pos)
            pos += 4 * count
            fields = tuple((raw[2 * i], raw[2 * i + 1], 0) for i in range(count))
            out.append(Template(exporter, VERSION, domain, tid, fields, 0, False))
        else:
            if pos + 6 > end:
                break
            tid, scope_len, option_len = _HHH.unpack_from(data, pos)
            if tid == 0:
                break  # padding
            pos += 6
            if tid < 256:
                errors["v9_bad_template_id"] += 1
                break
            if scope_len % 4 or option_len % 4:
                errors["v9_options_template_bad_length"] += 1
                break
            nscope, nopt = scope_len // 4, option_len // 4
            if nscope + nopt == 0:
                errors["v9_empty_template"] += 1
                break
            if nscope + nopt > limits.fields_per_template:
                errors["template_too_many_fields"] += 1
                break
            if pos + scope_len + option_len > end:
                errors["v9_template_truncated"] += 1
                break
            raw = struct.unpack_from(f">{2 * (nscope + nopt)}H", data, pos)
            pos += scope_len + option_len
            fields = tuple((raw[2 * i], raw[2 * i + 1], 0) for i in range(nscope + nopt))
            out.append(Template(exporter, VERSION, domain, tid, fields, nscope, True))
    return out


DIALECT = Dialect(
    version=VERSION,
    name="v9",
    header_len=HEADER_LEN,
    template_set=TEMPLATE_SET,
    options_set=OPTIONS_SET,
    parse_headers=parse_headers,
    parse_template_set=parse_template_set,
    counts_records=False,
)
