"""The data path NetFlow v9 and IPFIX share: sets, templates in force, records -> FlowBatch.

For the datagrams of one version in a :class:`~collector.datagrams.DatagramBatch`:

1. the headers are read at once (one gather, one structured view);
2. the sets of every message are walked in one compiled pass
   (:mod:`collector.decode._setkernel`);
3. (options) template sets — rare — are parsed in Python in message order and applied to
   the :class:`~collector.decode.templates.TemplateStore`, each definition or withdrawal
   becoming an *event* at its position;
4. each data set is matched with the template in force at its position (an "as-of"
   join, vectorised: sort by (template key, position), carry the last event forward), so
   sets of one message are processed in order even though decoding is batched;
5. data sets are grouped by template instance; the flow records of all sets of one
   fixed-length template are read where they lie, row by row, by one compiled pass
   (:mod:`collector.decode._fieldkernel`) — no copy, no Python loop per record. Options
   records (few) are joined and viewed through the template's dtype; variable-length
   templates go through the numba walker (:mod:`collector.decode._varlen`, imported only
   when such a template is met);
6. options data records (rare) update sampling rates and system init times, before the
   flow records of the same batch are mapped, so a template, its options data and flow
   data may share one message;
7. data sets whose template is unknown wait in the bounded
   :class:`~collector.decode.templates.PendingBuffer` and are decoded when it arrives.

Mapping onto FlowBatch (IANA names):
- addresses: sourceIPv4Address/destinationIPv4Address (8/12), sourceIPv6Address/
  destinationIPv6Address (27/28). A template with both families gives IPv6 rows where the
  IPv4 pair is zero and ipVersion (60), when present, agrees.
- counts: octetDeltaCount/packetDeltaCount (1/2); if absent postOctetDeltaCount/
  postPacketDeltaCount (23/24, v9 OUT_BYTES/OUT_PKTS); if absent octetTotalCount/
  packetTotalCount (85/86), taken as the flow's count (right for exporters that send one
  record per flow; noted as ``octets_from_total_count``). Neither: 0, noted.
- ingressInterface/egressInterface (10/14), vlanId (58) else dot1qVlanId (243),
  flowDirection (61) stored plus one (0 = not exported).
- times, per end, first present wins: *Milliseconds (152/153), *Microseconds (154/155,
  NTP format), *Nanoseconds (156/157, NTP format), *Seconds (150/151),
  *DeltaMicroseconds (158/159, before the export time), *SysUpTime (21/22: v9 against
  the header's sysUpTime and unix_secs, 32-bit wrap-safe; IPFIX against
  systemInitTimeMilliseconds (160) from options data). A missing end is start + duration
  (flowDurationMilliseconds 161 / Microseconds 162) or the start; a missing start is
  end - duration or the end. No usable time: both are the export time, ``time_source`` =
  1 and the record is counted in ``notes['time_from_export']``.
- sampling: see :mod:`collector.decode.sampling`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from collector.batch import TIME_FROM_EXPORT, FlowBatch
from collector.datagrams import DatagramBatch, gather_fixed
from collector.decode import fields as ie
from collector.decode.inplace import PER_RECORD_SAMPLING, TIMES_UPTIME, RecordSets, template_layout
from collector.decode.sampling import SamplingState
from collector.decode.sequence import SequenceRow, SequenceTracker
from collector.decode.templates import (
    ExporterKey,
    Limits,
    PendingBuffer,
    PendingSet,
    Template,
    TemplateKey,
    TemplateStore,
    unsigned,
)

NTP_UNIX_OFFSET_S = 2_208_988_800
_U32 = np.uint64(0xFFFF_FFFF)


@dataclass(frozen=True)
class Withdrawal:
    """An IPFIX template withdrawal: one template id, or all (template_id None)."""

    template_id: int | None
    options: bool


@dataclass
class Headers:
    """The accepted messages of one version in a batch (arrays aligned on ``rows``)."""

    rows: np.ndarray  # int64: datagram index in the batch
    starts: np.ndarray  # int64: absolute offset of the first set
    ends: np.ndarray  # int64: absolute end of the message
    export_ms: np.ndarray  # int64
    sys_uptime: np.ndarray | None  # int64 (v9 only)
    sequence: np.ndarray  # int64
    domain: np.ndarray  # int64: v9 source id / IPFIX observation domain id


@dataclass(frozen=True)
class Dialect:
    version: int
    name: str
    header_len: int
    template_set: int
    options_set: int
    parse_headers: Callable
    parse_template_set: Callable
    counts_records: bool  # IPFIX sequence numbers count data records, v9 count packets


class TemplateSetCache:
    """Parsed template sets, by their bytes and where they came from.

    Routers re-send their templates every few seconds or datagrams, nearly always
    unchanged; parsing and compiling a set again cost ~37 µs each time (0.7 µs per
    datagram of an IPFIX stream with templates every 100 datagrams). Templates are
    immutable, so a re-sent set reuses the parsed ones. Only sets that parsed without an
    error are kept (an error is counted each time it is seen). Bounded: exporters choose
    what they send; past ``limit`` sets the cache starts again.
    """

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._sets: dict[tuple, tuple] = {}

    def parse(
        self,
        dialect: Dialect,
        data: bytes,
        exporter: ExporterKey,
        domain: int,
        options: bool,
        limits: Limits,
        errors: Counter,
    ) -> tuple:
        key = (dialect.version, exporter, domain, options, data)
        items = self._sets.get(key)
        if items is not None:
            return items
        before = errors.total()
        items = tuple(dialect.parse_template_set(data, exporter, domain, options, limits, errors))
        if errors.total() == before:
            if len(self._sets) >= self.limit:
                self._sets.clear()
            self._sets[key] = items
        return items


@dataclass
class ExporterState:
    """Everything the decoder remembers about v9/IPFIX exporters between batches."""

    limits: Limits = field(default_factory=Limits)
    templates: TemplateStore = None  # type: ignore[assignment]
    pending: PendingBuffer = None  # type: ignore[assignment]
    sampling: SamplingState = None  # type: ignore[assignment]
    sequence: SequenceTracker = None  # type: ignore[assignment]
    template_sets: TemplateSetCache = field(default_factory=TemplateSetCache)

    def __post_init__(self) -> None:
        self.templates = self.templates or TemplateStore(self.limits)
        self.pending = self.pending or PendingBuffer(self.limits)
        self.sampling = self.sampling or SamplingState(
            samplers_per_exporter=self.limits.samplers_per_exporter
        )
        self.sequence = self.sequence or SequenceTracker()


@dataclass
class Decoded:
    parts: list[FlowBatch] = field(default_factory=list)
    export_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sequence: list[SequenceRow] = field(default_factory=list)
    defined: set = field(default_factory=set)  # template keys defined in this batch
    in_place: list[RecordSets] = field(default_factory=list)  # records left in the buffer


def gather_headers(batch: DatagramBatch, rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return gather_fixed(batch.buffer, batch.offsets[rows], dtype)


def walk_sets(
    buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray, limit: int, errors: Counter, name: str
):
    """Every set of every message: (message index, set id, content start, content length).

    Returned in message order, sets of a message in their order (one compiled pass,
    :mod:`collector.decode._setkernel`). A set header with a length below 4 or past the
    message end stops that message (counted); v9 messages ending in zero bytes (padding)
    stop silently.
    """
    from collector.decode import _setkernel  # numba: loaded on the first decode

    msg, sid, start, length, too_many, bad_length = _setkernel.walk(
        buffer, starts.astype(np.int64), ends.astype(np.int64), np.int64(limit)
    )
    if too_many:
        errors[f"{name}_too_many_sets"] += int(too_many)
    if bad_length:
        errors[f"{name}_bad_set_length"] += int(bad_length)
    return msg, sid, start, length


def decode_messages(
    dialect: Dialect,
    batch: DatagramBatch,
    rows: np.ndarray,
    exporter_of_row: np.ndarray,
    exporters: list[tuple[int, int]],
    state: ExporterState,
    dropped: Counter,
    notes: Counter,
    *,
    replay: bool = False,
    in_place: bool = False,
) -> Decoded:
    """Decode the v9 or IPFIX datagrams ``batch[rows]`` (see module docstring). With
    ``in_place``, flow records of the layouts collector/decode/inplace.py describes are
    left in the buffer (``Decoded.in_place``) instead of mapped."""
    out = Decoded()
    name = dialect.name
    h = dialect.parse_headers(batch, rows, dropped)
    if len(h.rows) == 0:
        return out
    out.export_ms = h.export_ms
    exporter_idx = exporter_of_row[h.rows].astype(np.int64)
    msg, sid, start, length = walk_sets(
        batch.buffer, h.starts, h.ends, state.limits.sets_per_message, dropped, name
    )
    is_tpl = (sid == dialect.template_set) | (sid == dialect.options_set)
    is_data = sid >= 256
    reserved = ~is_tpl & ~is_data
    if reserved.any():
        dropped[f"{name}_reserved_set_id"] += int(reserved.sum())
    data_pos = np.flatnonzero(is_data)
    d_msg = msg[data_pos]
    d_code = (
        (exporter_idx[d_msg].astype(np.uint64) << np.uint64(48))
        | ((h.domain[d_msg].astype(np.uint64) & _U32) << np.uint64(16))
        | sid[data_pos].astype(np.uint64)
    )
    # Template instances in force at the start of the batch, per data key.
    instances: list[Template] = []
    index_of: dict[int, int] = {}

    def instance_index(t: Template | None) -> int:
        if t is None:
            return -1
        i = index_of.get(id(t))
        if i is None:
            i = index_of[id(t)] = len(instances)
            instances.append(t)
        return i

    def key_of(code: int) -> TemplateKey:
        return (
            exporters[code >> 48],
            dialect.version,
            (code >> 16) & 0xFFFF_FFFF,
            code & 0xFFFF,
        )

    uniq_codes, code_inv = _distinct(d_code)
    first_inst = np.array(
        [instance_index(state.templates.get(key_of(int(c)))) for c in uniq_codes.tolist()],
        dtype=np.int64,
    )
    d_inst = first_inst[code_inv] if len(d_code) else np.zeros(0, np.int64)

    # Template sets, in message order: apply to the store, remember the events.
    ev_code: list[int] = []
    ev_pos: list[int] = []
    ev_inst: list[int] = []
    view = memoryview(batch.buffer)
    templates_note = f"{name}_templates"
    # Template sets seen in this batch since the store last changed, that changed nothing
    # (routers re-send the same set every few datagrams: ~40 times in a 4,096-datagram
    # IPFIX batch): a repeat changes nothing either and only adds its notes. Any event
    # forgets them all, since a set in force may have been replaced meanwhile.
    quiet: dict[tuple, tuple[int, int]] = {}
    if not replay:
        for p in np.flatnonzero(is_tpl).tolist():
            m = int(msg[p])
            e = int(exporter_idx[m])
            exporter = exporters[e]
            domain = int(h.domain[m])
            s0 = int(start[p])
            data = bytes(view[s0 : s0 + int(length[p])])
            seen = (e, domain, int(sid[p]), data)
            repeat = quiet.get(seen)
            if repeat is not None:
                notes[templates_note] += repeat[0]
                if repeat[1]:
                    notes["template_field_length_unusable"] += repeat[1]
                continue
            events, errors = len(ev_code), dropped.total()
            items = state.template_sets.parse(
                dialect,
                data,
                exporter,
                domain,
                int(sid[p]) == dialect.options_set,
                state.limits,
                dropped,
            )
            base = (e << 48) | (domain << 16)
            in_force = skipped = 0
            for item in items:
                if isinstance(item, Withdrawal):
                    if item.template_id is None:
                        keys = state.templates.keys_of(
                            exporter, dialect.version, domain, item.options
                        )
                    else:
                        keys = [(exporter, dialect.version, domain, item.template_id)]
                    for key in keys:
                        if state.templates.withdraw(key):
                            notes["template_withdrawn"] += 1
                        ev_code.append(base | key[3])
                        ev_pos.append(p)
                        ev_inst.append(-1)
                    continue
                notes[templates_note] += 1
                if state.templates.get(item.key) is item:
                    # Re-sent, already in force (the set cache returns the same objects):
                    # nothing changes, so no event for the as-of join.
                    if item.skipped_lengths:
                        notes["template_field_length_unusable"] += item.skipped_lengths
                    out.defined.add(item.key)
                    in_force += 1
                    skipped += item.skipped_lengths
                    continue
                inst = state.templates.define(item, dropped)
                if inst is not None and inst.skipped_lengths:
                    notes["template_field_length_unusable"] += inst.skipped_lengths
                ev_code.append(base | item.template_id)
                ev_pos.append(p)
                ev_inst.append(instance_index(inst))
                if inst is not None:
                    out.defined.add(item.key)
            if len(ev_code) > events:
                quiet.clear()
            elif dropped.total() == errors and in_force == len(items):
                quiet[seen] = (in_force, skipped)
    if ev_code and len(data_pos):
        d_inst = _as_of(
            d_code,
            data_pos,
            d_inst,
            np.array(ev_code, np.uint64),
            np.array(ev_pos, np.int64),
            np.array(ev_inst, np.int64),
        )

    # Data sets without a template wait for it.
    set_records = np.full(len(data_pos), -1, np.int64)
    unknown = np.flatnonzero(d_inst < 0)
    if len(unknown):
        if replay:
            dropped[f"{name}_pending_template_gone"] += len(unknown)
        else:
            for j in unknown.tolist():
                m = int(d_msg[j])
                p = data_pos[j]
                row = int(h.rows[m])
                off = int(batch.offsets[row])
                s0 = int(start[p])
                key = key_of(int(d_code[j]))
                state.pending.add(
                    key,
                    PendingSet(
                        key[0],
                        bytes(view[off : off + dialect.header_len]),
                        bytes(view[s0 - 4 : s0 + int(length[p])]),
                        int(batch.arrival_ns[row]),
                        int(batch.source_port[row]),
                    ),
                    dropped,
                )
            notes[f"{name}_sets_waiting_for_template"] += len(unknown)

    # Decode per template instance: options first (they set rates for the flows).
    ctx = _Context(h, exporter_idx)
    known = d_inst >= 0
    order = sorted(
        _distinct(d_inst[known])[0].tolist(), key=lambda i: (not instances[i].is_options, i)
    )
    for i in order:
        t = instances[i]
        sel = np.flatnonzero(d_inst == i)
        pos = data_pos[sel]
        if not t.is_options and not t.variable and t.record_length > 0:
            # Flow records of a fixed layout: read in place, no copy of the records.
            per_set = length[pos] // t.record_length
            set_records[sel] = per_set
            if not per_set.any():
                continue
            layout = template_layout(t, dialect.version) if in_place else None
            if layout is not None:
                out.in_place.append(
                    _record_sets(
                        t, layout, batch.buffer, start[pos], per_set, d_msg[sel], ctx, state
                    )
                )
            else:
                columns = _Columns.from_sets(t, batch.buffer, start[pos], per_set)
                rec_msg = np.repeat(d_msg[sel], per_set)
                out.parts.append(flow_batch(t, columns, rec_msg, ctx, state.sampling, notes))
            continue
        records, rec_msg, per_set = extract_records(
            t, batch.buffer, start[pos], length[pos], d_msg[sel], dropped, name
        )
        set_records[sel] = per_set
        if not len(records):
            continue
        if t.is_options:
            apply_options(t, records, state.sampling, notes)
            notes[f"{name}_options_records"] += len(records)
        else:
            columns = _Columns.from_records(t, records)
            out.parts.append(flow_batch(t, columns, rec_msg, ctx, state.sampling, notes))
    if replay:
        notes[f"{name}_records_decoded_after_template"] += int(sum(len(p) for p in out.parts))

    if not replay:
        if dialect.counts_records:
            increment = np.zeros(len(h.rows), np.int64)
            np.add.at(increment, d_msg, np.maximum(set_records, 0))
            unknown_msgs = np.zeros(len(h.rows), bool)
            unknown_msgs[d_msg[set_records < 0]] = True
            increment[unknown_msgs] = -1
        else:
            increment = np.ones(len(h.rows), np.int64)
        out.sequence = state.sequence.observe(
            exporters, dialect.version, exporter_idx, h.domain, h.sequence, increment, h.export_ms
        )
    return out


def _record_sets(
    t: Template,
    layout: tuple[np.ndarray, int],
    buffer: np.ndarray,
    set_starts: np.ndarray,
    per_set: np.ndarray,
    set_msg: np.ndarray,
    ctx: _Context,
    state: ExporterState,
) -> RecordSets:
    """Fixed-layout flow sets of one template, left in the buffer (see inplace.py); the
    records the in-place pass cannot take come back through :func:`flow_batch`."""
    fields, times = layout
    h = ctx.h
    uses_uptime = times == TIMES_UPTIME and h.sys_uptime is not None
    sampling = state.sampling

    def materialize(sets: np.ndarray, offsets: np.ndarray, notes: Counter) -> FlowBatch:
        columns = _Columns.from_sets(t, buffer, offsets, np.ones(len(offsets), np.int64))
        return flow_batch(t, columns, set_msg[sets], ctx, sampling, notes)

    return RecordSets(
        buffer=buffer,
        set_starts=set_starts.astype(np.int64),
        per_set=per_set.astype(np.int64),
        record_length=t.record_length,
        layout=fields,
        times=times,
        export_ms=h.export_ms[set_msg],
        uptime=h.sys_uptime[set_msg] if uses_uptime else np.zeros(len(set_msg), np.int64),
        rate=np.full(len(set_msg), _set_rate(t, sampling), np.uint32),
        exporter_index=ctx.exporter_idx32[set_msg],
        end_before_start_note="end_before_start",
        rate_unknown_note="sampling_rate_not_exported",
        materialize=materialize,
    )


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, without its sort when every value is
    the same (the usual batch: one exporter, one template)."""
    if len(values) and values.min() == values.max():
        return values[:1].copy(), np.zeros(len(values), np.intp)
    uniques, inverse = np.unique(values, return_inverse=True)
    return uniques, inverse.reshape(-1)


def _as_of(d_code, d_pos, d_inst, ev_code, ev_pos, ev_inst) -> np.ndarray:
    """For each data set, the instance of the last event of its key before it (if any)."""
    nd = len(d_code)
    codes = np.concatenate([d_code, ev_code])
    pos = np.concatenate([d_pos, ev_pos])
    is_event = np.concatenate([np.zeros(nd, bool), np.ones(len(ev_code), bool)])
    # Events sort after data at the same position (never happens: distinct sets).
    order = np.lexsort((is_event, pos, codes))
    idx = np.arange(len(order))
    last = np.maximum.accumulate(np.where(is_event[order], idx, -1))
    sorted_codes = codes[order]
    has = (last >= 0) & (sorted_codes[np.maximum(last, 0)] == sorted_codes)
    inst_all = np.concatenate([d_inst, ev_inst])
    carried = np.where(has, inst_all[order][np.maximum(last, 0)], inst_all[order])
    result = d_inst.copy()
    data_slots = ~is_event[order]
    result[order[data_slots]] = carried[data_slots]
    return result


def extract_records(
    t: Template,
    buffer: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    set_msg: np.ndarray,
    errors: Counter,
    name: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records of the data sets of one template: (structured records, message of each
    record, records per set)."""
    if t.variable:
        from collector.decode import _varlen  # numba: only when such a template is met

        ends = starts + lengths
        max_records = int((lengths // max(t.min_record_length, 1)).sum())
        raw, rec_set, per_set = _varlen.walk(
            buffer,
            starts.astype(np.int64),
            ends.astype(np.int64),
            t.field_lengths,
            t.projection,
            t.dtype.itemsize,
            max_records,
        )
        records = raw.reshape(-1).view(t.dtype)
        return records, set_msg[rec_set], per_set
    size = t.record_length
    if size <= 0:
        errors[f"{name}_template_zero_length"] += len(starts)
        return np.zeros(0, t.dtype), np.zeros(0, np.int64), np.zeros(len(starts), np.int64)
    per_set = lengths // size
    view = memoryview(buffer)
    s_list = starts.tolist()
    e_list = (starts + per_set * size).tolist()
    blob = b"".join([view[s:e] for s, e in zip(s_list, e_list, strict=True)])
    records = np.frombuffer(blob, dtype=t.dtype)
    return records, np.repeat(set_msg, per_set), per_set


@dataclass
class _Context:
    h: Headers
    exporter_idx: np.ndarray  # per message: index into the result's exporter list

    def __post_init__(self) -> None:
        # FlowBatch's dtype, converted once per batch of messages, not once per record.
        self.exporter_idx32 = self.exporter_idx.astype(np.int32)


def apply_options(t: Template, records: np.ndarray, sampling: SamplingState, notes: Counter):
    """Learn sampling rates / init times from options data records (few: a Python loop)."""
    wanted = (
        ie.SYSTEM_INIT_TIME_MILLISECONDS,
        ie.SAMPLER_ID,
        ie.SELECTOR_ID,
        ie.SAMPLER_RANDOM_INTERVAL,
        ie.SAMPLING_INTERVAL,
        ie.SAMPLING_PACKET_INTERVAL,
        ie.SAMPLING_PACKET_SPACE,
        ie.SAMPLING_SIZE,
        ie.SAMPLING_POPULATION,
    )
    cols = {e: unsigned(records, e, t.lengths[e]).tolist() for e in wanted if t.has(e)}
    if not cols:
        return
    for i in range(len(records)):
        values = {e: c[i] for e, c in cols.items()}
        sampling.learn(t.exporter, t.version, t.domain, values, notes)


def _ntp_ms(value: np.ndarray) -> np.ndarray:
    sec = (value >> np.uint64(32)).astype(np.int64)
    frac = (value & _U32).astype(np.uint64)
    return (sec - NTP_UNIX_OFFSET_S) * 1000 + ((frac * np.uint64(1000)) >> np.uint64(32)).astype(
        np.int64
    )


def _endpoint(t: Template, get, n: int, export_ms, ctx_uptime, init_ms, which: str, notes):
    """One end of the flows' time span in unix ms, or None if the template has none."""
    start = which == "start"
    ms, us, ns, s, delta, up = (
        (
            ie.FLOW_START_MILLISECONDS,
            ie.FLOW_START_MICROSECONDS,
            ie.FLOW_START_NANOSECONDS,
            ie.FLOW_START_SECONDS,
            ie.FLOW_START_DELTA_MICROSECONDS,
            ie.FLOW_START_SYS_UP_TIME,
        )
        if start
        else (
            ie.FLOW_END_MILLISECONDS,
            ie.FLOW_END_MICROSECONDS,
            ie.FLOW_END_NANOSECONDS,
            ie.FLOW_END_SECONDS,
            ie.FLOW_END_DELTA_MICROSECONDS,
            ie.FLOW_END_SYS_UP_TIME,
        )
    )
    L = t.lengths
    if ms in L:
        return get(ms).view(np.int64)  # the same bits as astype, without a copy
    if us in L:
        return _ntp_ms(get(us))
    if ns in L:
        return _ntp_ms(get(ns))
    if s in L:
        return get(s).astype(np.int64) * 1000
    if delta in L:
        d_us = get(delta).astype(np.int64)
        return (export_ms * 1000 - d_us) // 1000
    if up in L:
        stamp = get(up) & _U32
        if ctx_uptime is not None:  # v9: header sysUpTime at export
            age = ((ctx_uptime.astype(np.uint64) - stamp) & _U32).astype(np.uint32).view(np.int32)
            return export_ms - age.astype(np.int64)
        if init_ms is not None:  # IPFIX: systemInitTimeMilliseconds from options data
            up_at_export = (export_ms - init_ms).astype(np.int64)
            age = ((up_at_export.astype(np.uint64) - stamp) & _U32).astype(np.uint32).view(np.int32)
            return export_ms - age.astype(np.int64)
        if start:
            notes["ipfix_sysuptime_without_init_time"] += n
        return None
    return None


class _Columns:
    """The wanted elements of a batch of records as native uint64 arrays, read in one
    compiled pass (:mod:`collector.decode._fieldkernel`); IPv6 addresses as (hi, lo)."""

    def __init__(self, values: np.ndarray, slots: dict[int, int]) -> None:
        self.values = values
        self.slots = slots

    @staticmethod
    def _plan(t: Template) -> tuple[dict[int, int], np.ndarray, np.ndarray]:
        """Where each wanted element lies in a record: element -> row of ``values``, and
        the (offset, length) read for each row (a 16-byte address is two rows)."""
        fields = t.dtype.fields
        slots: dict[int, int] = {}
        offsets, lengths = [], []
        for element, length in t.lengths.items():
            off = fields[f"e{element}"][1]
            if length == 16:
                slots[element] = len(offsets)
                offsets += [off, off + 8]
                lengths += [8, 8]
            elif length <= 8:
                slots[element] = len(offsets)
                offsets.append(off)
                lengths.append(length)
        return slots, np.array(offsets, np.int64), np.array(lengths, np.int64)

    @classmethod
    def from_records(cls, t: Template, rec: np.ndarray) -> _Columns:
        from collector.decode import _fieldkernel  # numba: loaded on the first decode

        slots, offsets, lengths = cls._plan(t)
        raw = np.ascontiguousarray(rec).view(np.uint8).reshape(-1)
        whole = np.zeros(1, np.int64), np.array([len(rec)], np.int64)  # one set: all of them
        values = _fieldkernel.extract_sets(raw, *whole, rec.dtype.itemsize, offsets, lengths)
        return cls(values, slots)

    @classmethod
    def from_sets(
        cls, t: Template, buffer: np.ndarray, set_starts: np.ndarray, per_set: np.ndarray
    ) -> _Columns:
        """Fixed-length records read where they lie in the datagrams."""
        from collector.decode import _fieldkernel

        slots, offsets, lengths = cls._plan(t)
        values = _fieldkernel.extract_sets(
            buffer, set_starts, per_set, t.record_length, offsets, lengths
        )
        return cls(values, slots)

    def get(self, element: int) -> np.ndarray | None:
        k = self.slots.get(element)
        return None if k is None else self.values[k]

    def pair(self, element: int) -> np.ndarray | None:
        k = self.slots.get(element)
        return None if k is None else np.ascontiguousarray(self.values[k : k + 2].T)


def flow_batch(
    t: Template,
    columns: _Columns,
    rec_msg: np.ndarray,
    ctx: _Context,
    sampling: SamplingState,
    notes: Counter,
) -> FlowBatch:
    """Map the records of one template onto FlowBatch columns (module docstring)."""
    n = len(rec_msg)
    L = t.lengths
    get = columns.get

    has4 = ie.SOURCE_IPV4_ADDRESS in L or ie.DESTINATION_IPV4_ADDRESS in L
    has6 = ie.SOURCE_IPV6_ADDRESS in L or ie.DESTINATION_IPV6_ADDRESS in L
    zeros32 = np.zeros(n, np.uint32)
    src4 = get(ie.SOURCE_IPV4_ADDRESS).astype(np.uint32) if ie.SOURCE_IPV4_ADDRESS in L else zeros32
    dst4 = (
        get(ie.DESTINATION_IPV4_ADDRESS).astype(np.uint32)
        if ie.DESTINATION_IPV4_ADDRESS in L
        else zeros32
    )
    if has6:
        zeros6 = np.zeros((n, 2), np.uint64)
        src6 = columns.pair(ie.SOURCE_IPV6_ADDRESS) if ie.SOURCE_IPV6_ADDRESS in L else zeros6
        dst6 = (
            columns.pair(ie.DESTINATION_IPV6_ADDRESS)
            if ie.DESTINATION_IPV6_ADDRESS in L
            else zeros6
        )
        if has4:
            v6 = (src4 == 0) & (dst4 == 0) & ((src6 != 0).any(axis=1) | (dst6 != 0).any(axis=1))
            ipv = get(ie.IP_VERSION)
            if ipv is not None:
                v6 = np.where((ipv == 4) | (ipv == 6), ipv == 6, v6)
            ip_version = np.where(v6, 6, 4).astype(np.uint8)
        else:
            ip_version = np.full(n, 6, np.uint8)
    else:
        src6 = dst6 = np.zeros((0, 2), np.uint64)
        ip_version = np.full(n, 4, np.uint8)
        if not has4:
            notes["record_without_address"] += n

    octets = get(ie.OCTET_DELTA_COUNT)
    if octets is None:
        octets = get(ie.POST_OCTET_DELTA_COUNT)
        if octets is None:
            octets = get(ie.OCTET_TOTAL_COUNT)
            if octets is not None:
                notes["octets_from_total_count"] += n
            else:
                notes["record_without_octets"] += n
                octets = np.zeros(n, np.uint64)
        else:
            notes["octets_from_post_count"] += n
    packets = get(ie.PACKET_DELTA_COUNT)
    if packets is None:
        packets = get(ie.POST_PACKET_DELTA_COUNT)
        if packets is None:
            packets = get(ie.PACKET_TOTAL_COUNT)
            if packets is None:
                packets = np.zeros(n, np.uint64)

    def u32(element: int) -> np.ndarray:
        v = get(element)
        return zeros32 if v is None else v.astype(np.uint32)

    vlan = get(ie.VLAN_ID)
    if vlan is None:
        vlan = get(ie.DOT1Q_VLAN_ID)
    direction = get(ie.FLOW_DIRECTION)

    # Times.
    h = ctx.h
    export_ms = h.export_ms[rec_msg]
    uptime = h.sys_uptime[rec_msg] if h.sys_uptime is not None else None
    init = sampling.init_time_ms.get((t.exporter, t.domain))
    start = _endpoint(t, get, n, export_ms, uptime, init, "start", notes)
    end = _endpoint(t, get, n, export_ms, uptime, init, "end", notes)
    duration = get(ie.FLOW_DURATION_MILLISECONDS)
    if duration is not None:
        duration = duration.astype(np.int64)
    elif ie.FLOW_DURATION_MICROSECONDS in L:
        duration = get(ie.FLOW_DURATION_MICROSECONDS).astype(np.int64) // 1000
    time_source = None
    if start is None and end is None:
        start = end = export_ms
        time_source = np.full(n, TIME_FROM_EXPORT, np.uint8)
        notes["time_from_export"] += n
    elif start is None:
        start = end - duration if duration is not None else end
    elif end is None:
        end = start + duration if duration is not None else start
    inverted = end < start
    if inverted.any():
        notes["end_before_start"] += int(inverted.sum())
        start = np.where(inverted, end, start)

    return FlowBatch(
        ip_version=ip_version,
        source_ipv4_address=src4,
        destination_ipv4_address=dst4,
        octet_delta_count=octets,
        packet_delta_count=packets,
        sampling_interval=_rates(t, get, n, sampling, notes),
        flow_start_milliseconds=start,
        flow_end_milliseconds=end,
        ingress_interface=u32(ie.INGRESS_INTERFACE),
        egress_interface=u32(ie.EGRESS_INTERFACE),
        exporter_index=ctx.exporter_idx32[rec_msg],
        source_ipv6_address=src6,
        destination_ipv6_address=dst6,
        vlan_id=None if vlan is None else vlan.astype(np.uint16),
        flow_direction=None
        if direction is None
        else np.where(direction <= 1, direction + 1, 0).astype(np.uint8),
        time_source=time_source,
    )


def _set_rate(t: Template, sampling: SamplingState) -> int:
    """The one rate of a template without a per-record sampling element: the configured
    override, else what options data gave for its domain, else the configured default
    (0 = unknown)."""
    override = sampling.overrides.get(t.exporter)
    if override:
        return override
    rate = sampling.domain_rate(t.exporter, t.version, t.domain)
    rate = rate or sampling.fallback_rate(t.exporter)
    return min(rate or 0, 0xFFFF_FFFF)


def _rates(t: Template, get, n: int, sampling: SamplingState, notes: Counter) -> np.ndarray:
    """Sampling rate of each record (policy in :mod:`collector.decode.sampling`)."""
    if sampling.overrides.get(t.exporter) or not any(e in t.lengths for e in PER_RECORD_SAMPLING):
        # An override, or nothing per record: one rate for the whole set (most templates).
        rate = _set_rate(t, sampling)
        if not rate:
            notes["sampling_rate_not_exported"] += n
        return np.full(n, rate, np.uint32)
    rate = None
    interval = get(ie.SAMPLING_INTERVAL)
    if interval is not None:
        rate = interval
    elif ie.SAMPLING_PACKET_INTERVAL in t.lengths:
        pi = get(ie.SAMPLING_PACKET_INTERVAL)
        ps = get(ie.SAMPLING_PACKET_SPACE)
        ps = np.zeros(n, np.uint64) if ps is None else ps
        rate = np.where(pi > 0, (pi + ps) // np.maximum(pi, np.uint64(1)), 0)
    rate = np.zeros(n, np.uint64) if rate is None else rate.astype(np.uint64)
    missing = rate == 0
    if missing.any():
        sampler = get(ie.SAMPLER_ID)
        if sampler is None:
            sampler = get(ie.SELECTOR_ID)
        if sampler is not None:
            ids, inv = np.unique(sampler[missing], return_inverse=True)
            found = np.array(
                [
                    sampling.sampler_rate(t.exporter, t.version, t.domain, int(s))
                    for s in ids.tolist()
                ],
                np.uint64,
            )
            rate[missing] = found[inv.reshape(-1)]
            missing = rate == 0
    if missing.any():
        fallback = sampling.domain_rate(t.exporter, t.version, t.domain)
        fallback = fallback or sampling.fallback_rate(t.exporter)
        if fallback:
            rate[missing] = fallback
        else:
            notes["sampling_rate_not_exported"] += int(missing.sum())
    return np.minimum(rate, np.uint64(0xFFFF_FFFF)).astype(np.uint32)
