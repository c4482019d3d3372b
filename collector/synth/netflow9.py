"""Encode synthetic flows as NetFlow v9 export packets, as a router would.

Also holds what the IPFIX encoder (:mod:`collector.synth.ipfix`) shares with it: template
layouts as lists of (element id, length) and the filling of records from
:class:`~collector.synth.model.SynthFlows` columns with numpy (independent of the
decoder's code: the dtype here is built from the layout, field by field).

A router (:class:`TemplatedExporter`) may sample with several samplers: flow i of the
router uses sampler ``i % len(samplers)`` (by its position in the generated flows), and
its records carry that sampler's id; the rates travel in options data. Knobs reproduce
the cases a collector must survive: templates only after the first data
(``template_after``), a template id reused by another router with another layout
(``layout``), a template withdrawn and redefined with a new layout (IPFIX,
``redefine_after``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from collector.synth.model import SynthFlows
from collector.synth.pcapwriter import Datagram

MOD32 = 1 << 32

# Layouts: (element id, length). 21/22 = flowEnd/StartSysUpTime, 152/153 = ms, 158/159 = delta µs.
V9_LAYOUTS: dict[str, dict[int, list[tuple[int, int]]]] = {
    "a": {
        4: [
            (8, 4),
            (12, 4),
            (1, 4),
            (2, 4),
            (10, 2),
            (14, 2),
            (22, 4),
            (21, 4),
            (7, 2),
            (11, 2),
            (4, 1),
        ],
        6: [(27, 16), (28, 16), (1, 8), (2, 8), (10, 4), (14, 4), (22, 4), (21, 4), (4, 1)],
    },
    "b": {
        4: [(4, 1), (21, 4), (22, 4), (2, 8), (1, 8), (14, 4), (10, 4), (12, 4), (8, 4), (61, 1)],
        6: [(21, 4), (22, 4), (28, 16), (27, 16), (2, 4), (1, 4)],
    },
}


@dataclass(frozen=True)
class TemplatedExporter:
    """One simulated v9/IPFIX router."""

    address: str
    domain: int = 0  # v9 source id / IPFIX observation domain id
    samplers: tuple[tuple[int, int], ...] = ()  # (sampler id, rate); () = unsampled
    boot_ms: int = 0
    export_delay_ms: int = 1_500
    records_per_datagram: int = 30
    template_every: int = 20  # datagrams between template (and options) refreshes
    template_after: int = 0  # datagrams of data sent before the first template
    layout: str = "a"
    time_mode: str = "uptime"  # IPFIX: "ms", "uptime" (+ systemInitTime), "delta"
    redefine_after: int | None = None  # IPFIX: withdraw 256 then redefine it (layout "b")
    source_port: int = 50000
    destination_port: int = 2055
    template_ids: dict[int, int] = field(default_factory=lambda: {4: 256, 6: 257})

    def rate_of_flow(self, positions: np.ndarray) -> np.ndarray:
        """Sampling rate applied to the router's flows (by their position in the flows)."""
        if not self.samplers:
            return np.ones(len(positions), np.int64)
        rates = np.array([r for _s, r in self.samplers], np.int64)
        return rates[positions % len(self.samplers)]


def record_dtype(layout: list[tuple[int, int]]) -> np.dtype:
    names, formats, offsets = [], [], []
    offset = 0
    for element, length in layout:
        names.append(f"f{element}")
        if length == 16:
            formats.append((">u8", (2,)))
        elif length == 1:
            formats.append("u1")
        else:
            formats.append(f">u{length}")
        offsets.append(offset)
        offset += length
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


def fill_records(
    layout: list[tuple[int, int]],
    flows: SynthFlows,
    sel: np.ndarray,
    ex: TemplatedExporter,
    export_ms: int,
    sampler_ids: np.ndarray,
) -> bytes:
    """Records of flows ``sel`` in ``layout``, as bytes."""
    rec = np.zeros(len(sel), record_dtype(layout))
    for element, _length in layout:
        name = f"f{element}"
        if element == 8:
            rec[name] = flows.src4[sel]
        elif element == 12:
            rec[name] = flows.dst4[sel]
        elif element == 27:
            rec[name] = flows.src6[sel]
        elif element == 28:
            rec[name] = flows.dst6[sel]
        elif element == 1:
            rec[name] = flows.octets[sel]
        elif element == 2:
            rec[name] = flows.packets[sel]
        elif element == 10:
            rec[name] = flows.input_if[sel]
        elif element == 14:
            rec[name] = flows.output_if[sel]
        elif element == 7:
            rec[name] = 443
        elif element == 11:
            rec[name] = 50_000 + (sel % 10_000)
        elif element == 4:
            rec[name] = 6
        elif element == 22:
            rec[name] = (flows.start_ms[sel] - ex.boot_ms) % MOD32
        elif element == 21:
            rec[name] = (flows.end_ms[sel] - ex.boot_ms) % MOD32
        elif element == 152:
            rec[name] = flows.start_ms[sel]
        elif element == 153:
            rec[name] = flows.end_ms[sel]
        elif element == 158:
            rec[name] = (export_ms - flows.start_ms[sel]) * 1000
        elif element == 159:
            rec[name] = (export_ms - flows.end_ms[sel]) * 1000
        elif element in (48, 302):
            rec[name] = sampler_ids
        elif element == 61:
            rec[name] = 0
        else:
            raise ValueError(f"no synthetic value for element {element}")
    return rec.tobytes()


def chunks_of(flows: SynthFlows, ex_index: int, ex: TemplatedExporter):
    """(flow indices sorted by end time, their sampler ids), cut into datagram chunks."""
    sel = np.flatnonzero(flows.exporter == ex_index)
    position = np.arange(len(sel))  # the router's own flow positions pick the samplers
    ids = (
        np.array([s for s, _r in ex.samplers], np.int64)[position % len(ex.samplers)]
        if ex.samplers
        else np.zeros(len(sel), np.int64)
    )
    order = np.argsort(flows.end_ms[sel], kind="stable")
    sel, ids = sel[order], ids[order]
    step = ex.records_per_datagram
    return [(sel[i : i + step], ids[i : i + step]) for i in range(0, len(sel), step)]


def flow_rates(flows: SynthFlows, exporters: list[TemplatedExporter]) -> np.ndarray:
    """Sampling rate of every flow (for the ground truth)."""
    rate = np.ones(len(flows), np.int64)
    for e, ex in enumerate(exporters):
        sel = np.flatnonzero(flows.exporter == e)
        rate[sel] = ex.rate_of_flow(np.arange(len(sel)))
    return rate


def _pad4(body: bytes) -> bytes:
    return body + b"\0" * (-len(body) % 4)


def _v9_layout(ex: TemplatedExporter, family: int) -> list[tuple[int, int]]:
    layout = list(V9_LAYOUTS[ex.layout][family])
    if ex.samplers:
        layout.append((48, 1))
    return layout


def encode_v9(flows: SynthFlows, exporters: list[TemplatedExporter]) -> list[Datagram]:
    """Export packets of every router, in export-time order (see module docstring).

    Header times are whole seconds (v9 carries unix_secs only), so decoding
    ``unix_secs*1000 - (sysUpTime - stamp)`` gives the generated milliseconds back.
    """
    out: list[Datagram] = []
    for ex_index, ex in enumerate(exporters):
        layouts = {fam: _v9_layout(ex, fam) for fam in (4, 6)}
        for seq, (sel, ids) in enumerate(chunks_of(flows, ex_index, ex)):
            export_ms = -(-(int(flows.end_ms[sel].max()) + ex.export_delay_ms) // 1000) * 1000
            sets = []
            with_templates = seq >= ex.template_after and (
                seq == ex.template_after or (seq - ex.template_after) % ex.template_every == 0
            )
            data_sets = []
            for fam in (4, 6):
                part = flows.ip_version[sel] == fam
                if part.any():
                    body = fill_records(layouts[fam], flows, sel[part], ex, export_ms, ids[part])
                    data_sets.append(_flowset(ex.template_ids[fam], body))
            if with_templates:
                sets.append(_v9_template_set(ex, layouts))
                if ex.samplers:
                    sets += _v9_sampler_options(ex)
            sets += data_sets
            header = struct.pack(
                ">HHIIII",
                9,
                len(sel) + (3 if with_templates else 0),
                (export_ms - ex.boot_ms) % MOD32,
                export_ms // 1000,
                seq % MOD32,
                ex.domain,
            )
            out.append(
                Datagram(
                    export_ms * 1_000_000,
                    ex.address,
                    header + b"".join(sets),
                    ex.source_port,
                    ex.destination_port,
                )
            )
    out.sort(key=lambda d: d.time_ns)
    return out


def _flowset(set_id: int, body: bytes) -> bytes:
    body = _pad4(body)
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def _v9_template_set(ex: TemplatedExporter, layouts) -> bytes:
    body = b""
    for fam in (4, 6):
        layout = layouts[fam]
        body += struct.pack(">HH", ex.template_ids[fam], len(layout))
        body += b"".join(struct.pack(">HH", e, n) for e, n in layout)
    return _flowset(0, body)


V9_OPTIONS_TEMPLATE_ID = 300


def _v9_sampler_options(ex: TemplatedExporter) -> list[bytes]:
    """Options template (scope System; FLOW_SAMPLER_ID, MODE, RANDOM_INTERVAL) + data."""
    scope = struct.pack(">HH", 1, 4)
    opts = struct.pack(">HHHHHH", 48, 1, 49, 1, 50, 4)
    tpl = struct.pack(">HHH", V9_OPTIONS_TEMPLATE_ID, len(scope), len(opts)) + scope + opts
    data = b"".join(struct.pack(">IBBI", 0, sid, 2, rate) for sid, rate in ex.samplers)
    return [_flowset(1, tpl), _flowset(V9_OPTIONS_TEMPLATE_ID, data)]
