"""Encode synthetic flows as NetFlow v5 export datagrams, as a router would."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.decode.netflow5 import HEADER_DTYPE, MAX_RECORDS, RECORD_DTYPE
from collector.synth.model import SynthFlows
from collector.synth.pcapwriter import Datagram

UPTIME_MODULUS = 1 << 32


@dataclass(frozen=True)
class V5Exporter:
    """One simulated router: its address, sampling interval and boot time."""

    address: str
    sampling_interval: int = 1  # 1 = unsampled; written to the header's low 14 bits
    boot_ms: int = 0  # sysUpTime 0; choose it to make the uptime wrap during a capture
    engine_id: int = 0
    export_delay_ms: int = 1_500


def encode_v5(flows: SynthFlows, exporters: list[V5Exporter]) -> list[Datagram]:
    """Datagrams of up to 30 records per exporter, in export-time order.

    Records are exported after their flow ends (sorted by end time); each datagram's
    header time is its last flow's end plus the exporter's delay, in whole milliseconds
    so that decoding gives the generated times back exactly.
    """
    if (flows.ip_version != 4).any():
        raise ValueError("NetFlow v5 carries IPv4 only")
    out: list[Datagram] = []
    for ex_index, ex in enumerate(exporters):
        sel = np.flatnonzero(flows.exporter == ex_index)
        sel = sel[np.argsort(flows.end_ms[sel], kind="stable")]
        n = len(sel)
        rec = np.zeros(n, RECORD_DTYPE)
        rec["srcaddr"] = flows.src4[sel]
        rec["dstaddr"] = flows.dst4[sel]
        rec["input"] = flows.input_if[sel]
        rec["output"] = flows.output_if[sel]
        rec["dPkts"] = flows.packets[sel]
        rec["dOctets"] = flows.octets[sel]
        rec["first"] = (flows.start_ms[sel] - ex.boot_ms) % UPTIME_MODULUS
        rec["last"] = (flows.end_ms[sel] - ex.boot_ms) % UPTIME_MODULUS
        rec["srcport"] = 443
        rec["dstport"] = 50_000 + (sel % 10_000)
        rec["prot"] = 6
        rec["tcp_flags"] = 0x18
        starts = np.arange(0, n, MAX_RECORDS)
        seq = 0
        for s in starts:
            chunk = rec[s : s + MAX_RECORDS]
            export_ms = int(flows.end_ms[sel[s : s + MAX_RECORDS]].max()) + ex.export_delay_ms
            header = np.zeros(1, HEADER_DTYPE)
            header["version"] = 5
            header["count"] = len(chunk)
            header["sys_uptime"] = (export_ms - ex.boot_ms) % UPTIME_MODULUS
            header["unix_secs"] = export_ms // 1000
            header["unix_nsecs"] = (export_ms % 1000) * 1_000_000
            header["flow_sequence"] = seq % UPTIME_MODULUS
            header["engine_id"] = ex.engine_id
            header["sampling_interval"] = (
                (1 << 14) | ex.sampling_interval if ex.sampling_interval > 1 else 0
            )
            seq += len(chunk)
            out.append(
                Datagram(export_ms * 1_000_000, ex.address, header.tobytes() + chunk.tobytes())
            )
    out.sort(key=lambda d: d.time_ns)
    return out
