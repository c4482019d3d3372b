"""Encode synthetic flows as IPFIX messages (RFC 7011), as a router would.

Shares the router description and record filling with :mod:`collector.synth.netflow9`.
Time fields by ``time_mode``: "ms" = flowStart/EndMilliseconds (152/153); "uptime" =
flowStart/EndSysUpTime (22/21) with systemInitTimeMilliseconds (160) in options data;
"delta" = flowStart/EndDeltaMicroseconds (158/159) before the export time. Sampling:
options data with selectorId (302) as scope and samplingPacketInterval/Space (305/306);
records carry selectorId. Sequence numbers count the data records sent before each
message (options data records included), as the RFC says.
"""

from __future__ import annotations

import struct

import numpy as np

from collector.synth.model import SynthFlows
from collector.synth.netflow9 import TemplatedExporter, chunks_of, fill_records
from collector.synth.pcapwriter import Datagram

TIME_FIELDS = {
    "ms": [(152, 8), (153, 8)],
    "uptime": [(22, 4), (21, 4)],
    "delta": [(158, 4), (159, 4)],
}
IPFIX_LAYOUTS: dict[str, dict[int, list[tuple[int, int]]]] = {
    "a": {
        4: [(8, 4), (12, 4), (1, 8), (2, 8), (10, 4), (14, 4), (7, 2), (11, 2), (4, 1)],
        6: [(27, 16), (28, 16), (1, 8), (2, 8), (10, 4), (14, 4), (4, 1)],
    },
    "b": {
        4: [(4, 1), (2, 4), (1, 4), (14, 2), (10, 2), (12, 4), (8, 4), (61, 1)],
        6: [(28, 16), (27, 16), (2, 4), (1, 4), (61, 1)],
    },
}
OPTIONS_SAMPLER_ID = 400
OPTIONS_INIT_ID = 401


def _layout(ex: TemplatedExporter, family: int, variant: str | None = None):
    layout = list(IPFIX_LAYOUTS[variant or ex.layout][family]) + TIME_FIELDS[ex.time_mode]
    if ex.samplers:
        layout.append((302, 4))
    return layout


def _set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def _template_set(ex: TemplatedExporter, layouts, families=(4, 6)) -> bytes:
    body = b""
    for fam in families:
        body += struct.pack(">HH", ex.template_ids[fam], len(layouts[fam]))
        body += b"".join(struct.pack(">HH", e, n) for e, n in layouts[fam])
    return _set(2, body)


def _options(ex: TemplatedExporter) -> tuple[list[bytes], int]:
    """(options template set + options data sets, number of options data records)."""
    tpl = b""
    data = []
    records = 0
    if ex.samplers:
        tpl += struct.pack(">HHH", OPTIONS_SAMPLER_ID, 3, 1) + struct.pack(
            ">HHHHHH", 302, 4, 305, 4, 306, 4
        )
        body = b"".join(struct.pack(">III", sid, 1, rate - 1) for sid, rate in ex.samplers)
        data.append(_set(OPTIONS_SAMPLER_ID, body))
        records += len(ex.samplers)
    if ex.time_mode == "uptime":
        tpl += struct.pack(">HHH", OPTIONS_INIT_ID, 2, 1) + struct.pack(">HHHH", 149, 4, 160, 8)
        data.append(_set(OPTIONS_INIT_ID, struct.pack(">IQ", ex.domain, ex.boot_ms)))
        records += 1
    if not tpl:
        return [], 0
    return [_set(3, tpl), *data], records


def encode_ipfix(flows: SynthFlows, exporters: list[TemplatedExporter]) -> list[Datagram]:
    """IPFIX messages of every router, in export-time order (see module docstring)."""
    out: list[Datagram] = []
    for ex_index, ex in enumerate(exporters):
        layouts = {fam: _layout(ex, fam) for fam in (4, 6)}
        sent = 0  # data records sent before the current message
        for seq, (sel, ids) in enumerate(chunks_of(flows, ex_index, ex)):
            export_ms = -(-(int(flows.end_ms[sel].max()) + ex.export_delay_ms) // 1000) * 1000
            sets: list[bytes] = []
            records = 0
            if ex.redefine_after is not None and seq == ex.redefine_after:
                # Withdraw template 256, then define it again with another layout.
                sets.append(_set(2, struct.pack(">HH", ex.template_ids[4], 0)))
                layouts = dict(layouts)
                layouts[4] = _layout(ex, 4, "b")
                sets.append(_template_set(ex, layouts, (4,)))
            with_templates = seq >= ex.template_after and (
                seq == ex.template_after or (seq - ex.template_after) % ex.template_every == 0
            )
            if with_templates:
                sets.append(_template_set(ex, layouts))
                opt_sets, n_opt = _options(ex)
                sets += opt_sets
                records += n_opt
            for fam in (4, 6):
                part = flows.ip_version[sel] == fam
                if part.any():
                    body = fill_records(layouts[fam], flows, sel[part], ex, export_ms, ids[part])
                    sets.append(_set(ex.template_ids[fam], body))
                    records += int(part.sum())
            body = b"".join(sets)
            header = struct.pack(
                ">HHIII", 10, 16 + len(body), export_ms // 1000, sent % (1 << 32), ex.domain
            )
            sent += records
            out.append(
                Datagram(
                    export_ms * 1_000_000,
                    ex.address,
                    header + body,
                    ex.source_port,
                    ex.destination_port,
                )
            )
    out.sort(key=lambda d: d.time_ns)
    return out


def rates_array(exporters: list[TemplatedExporter]) -> np.ndarray:
    """Rate of each exporter's first sampler (1 when unsampled): a summary for reports."""
    return np.array([ex.samplers[0][1] if ex.samplers else 1 for ex in exporters], np.int64)
