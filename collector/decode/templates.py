"""Template state of NetFlow v9 and IPFIX exporters, and templates compiled for decoding.

A template is keyed by (exporter address, version, observation domain / source id,
template id) — never by the UDP source port: an exporter may send from several ports,
and two exporters may use the same template id with different layouts.

A fixed-length template compiles once into a numpy structured dtype whose named fields
sit at their offsets in the record (the elements the decoder reads; everything else is
skipped by the dtype's itemsize), so the records of many data sets decode as one view.
A template with variable-length fields (length 65535, RFC 7011 §7) compiles into a
*projection*: the fixed-length elements the decoder reads, packed into a small fixed
layout that the numba walker (:mod:`collector.decode._varlen`) fills record by record.

Everything an exporter controls is bounded (:class:`Limits`): templates per exporter,
fields per template, and the data waiting for its template (:class:`PendingBuffer`).
The persisted form (:meth:`TemplateStore.snapshot`) is a list of plain dicts (JSON-able)
that :meth:`TemplateStore.restore` takes back, so templates survive a restart.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from collector.datagrams import address_to_pair, pair_to_address
from collector.decode import fields as ie

VARIABLE_LENGTH = 65535
ExporterKey = tuple[int, int]  # (hi, lo) of the exporter address, IPv4-mapped for IPv4
TemplateKey = tuple[ExporterKey, int, int, int]  # exporter, version, domain, template id


@dataclass(frozen=True)
class Limits:
    """Bounds on what one exporter can make the collector hold."""

    templates_per_exporter: int = 4096
    fields_per_template: int = 512
    field_length: int = 65534  # a fixed field longer than this cannot fit a message anyway
    pending_bytes: int = 8 * 1024 * 1024  # data sets waiting for their template, all exporters
    pending_bytes_per_exporter: int = 1024 * 1024
    pending_age_ns: int = 300 * 1_000_000_000  # by capture/arrival time
    samplers_per_exporter: int = 1024
    sets_per_message: int = 1024


@dataclass(eq=False)
class Template:
    """One (options) template as received, plus its compiled decoding layout."""

    exporter: ExporterKey
    version: int
    domain: int
    template_id: int
    fields: tuple[tuple[int, int, int], ...]  # (element id, length, enterprise number)
    scope_count: int = 0  # options templates: the first scope_count fields are scope fields
    is_options: bool = False
    # Compiled (see compile_template): filled in __post_init__.
    variable: bool = field(init=False, default=False)
    record_length: int = field(init=False, default=0)  # fixed templates; 0 = unusable
    min_record_length: int = field(init=False, default=0)
    dtype: np.dtype = field(init=False, default=None)  # type: ignore[assignment]
    lengths: dict[int, int] = field(init=False, default_factory=dict)  # element -> length read
    field_lengths: np.ndarray = field(init=False, default=None)  # type: ignore[assignment]
    projection: np.ndarray = field(init=False, default=None)  # type: ignore[assignment]
    skipped_lengths: int = field(init=False, default=0)  # wanted elements with odd lengths

    def __post_init__(self) -> None:
        compile_template(self)

    @property
    def key(self) -> TemplateKey:
        return (self.exporter, self.version, self.domain, self.template_id)

    def has(self, element: int) -> bool:
        return element in self.lengths

    def same_layout(self, other: Template) -> bool:
        return (
            self.fields == other.fields
            and self.scope_count == other.scope_count
            and self.is_options == other.is_options
        )

    def to_dict(self) -> dict:
        return {
            "exporter": str(pair_to_address(*self.exporter)),
            "version": self.version,
            "domain": self.domain,
            "template_id": self.template_id,
            "options": self.is_options,
            "scope_count": self.scope_count,
            "fields": [list(f) for f in self.fields],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Template:
        return cls(
            exporter=address_to_pair(d["exporter"]),
            version=int(d["version"]),
            domain=int(d["domain"]),
            template_id=int(d["template_id"]),
            fields=tuple((int(a), int(b), int(c)) for a, b, c in d["fields"]),
            scope_count=int(d["scope_count"]),
            is_options=bool(d["options"]),
        )


def _format(length: int):
    if length in (2, 4, 8):
        return f">u{length}"
    if length == 1:
        return "u1"
    if length == 16:
        return (">u8", (2,))
    return ("u1", (length,))


@dataclass(frozen=True)
class _Layout:
    """What compile_template derives from a template's fields (shared by identical ones)."""

    variable: bool
    record_length: int
    min_record_length: int
    dtype: np.dtype
    lengths: dict[int, int]
    field_lengths: np.ndarray
    projection: np.ndarray | None
    skipped_lengths: int


def compile_template(t: Template) -> None:
    """Fill the compiled layout of ``t`` (dtype or projection; see module docstring).

    Routers re-send the same templates every few seconds or packets (the live benchmark's
    exporters: ~80 per 4,096 datagrams, 6 ns per flow when each was compiled again): the
    layout of a field list is computed once and shared, in a bounded cache (exporters
    choose the field lists)."""
    layout = _compile_layout(t.version, t.fields, t.scope_count)
    t.variable = layout.variable
    t.record_length = layout.record_length
    t.min_record_length = layout.min_record_length
    t.dtype = layout.dtype
    t.lengths = dict(layout.lengths)
    t.field_lengths = layout.field_lengths
    t.projection = layout.projection
    t.skipped_lengths = layout.skipped_lengths


@functools.lru_cache(maxsize=1024)
def _compile_layout(
    version: int, fields: tuple[tuple[int, int, int], ...], scope_count: int
) -> _Layout:
    names: list[str] = []
    formats: list = []
    offsets: list[int] = []
    field_lengths = []
    projection = []
    lengths: dict[int, int] = {}
    skipped = 0
    offset = 0  # in the record (fixed templates)
    packed = 0  # in the projection (variable templates)
    variable = False
    min_length = 0
    for i, (element, length, enterprise) in enumerate(fields):
        field_lengths.append(-1 if length == VARIABLE_LENGTH else length)
        is_v9_scope = version == 9 and i < scope_count  # v9 scope types are not elements
        wanted = (
            not enterprise
            and not is_v9_scope
            and element in ie.WANTED
            and element not in lengths
            and length != VARIABLE_LENGTH
        )
        if wanted and length not in ie.WANTED[element]:
            skipped += 1
            wanted = False
        if wanted:
            lengths[element] = length
            names.append(f"e{element}")
            formats.append(_format(length))
            offsets.append(offset)
            projection.append(packed)
            packed += length
        else:
            projection.append(-1)
        if length == VARIABLE_LENGTH:
            variable = True
            min_length += 1
        else:
            offset += length
            min_length += length
    field_array = np.array(field_lengths, dtype=np.int64)
    if variable:
        proj = np.array(projection, dtype=np.int64)
        dtype = np.dtype(
            {
                "names": names,
                "formats": formats,
                "offsets": [int(p) for p in proj[proj >= 0]],
                "itemsize": max(packed, 1),
            }
        )
        return _Layout(True, 0, min_length, dtype, lengths, field_array, proj, skipped)
    dtype = np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": max(offset, 1)}
    )
    return _Layout(False, offset, min_length, dtype, lengths, field_array, None, skipped)


def unsigned(records: np.ndarray, element: int, length: int) -> np.ndarray:
    """An unsigned element of every record as uint64 (reduced-size encodings included)."""
    col = records[f"e{element}"]
    if length in (1, 2, 4, 8):
        return col.astype(np.uint64)
    out = np.zeros(len(records), np.uint64)
    for k in range(length):
        out = (out << np.uint64(8)) | col[:, k].astype(np.uint64)
    return out


class TemplateStore:
    """Templates of every exporter, bounded per exporter; counts what it refuses."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._templates: dict[TemplateKey, Template] = {}
        self._per_exporter: Counter = Counter()

    def __len__(self) -> int:
        return len(self._templates)

    def get(self, key: TemplateKey) -> Template | None:
        return self._templates.get(key)

    def define(self, template: Template, errors: Counter) -> Template | None:
        """Add or replace a template; returns the instance now in force (None if refused).

        A refresh with an identical layout returns the instance already held, so data
        decoded before and after the refresh share one compiled layout.
        """
        key = template.key
        old = self._templates.get(key)
        if old is not None:
            if old.same_layout(template):
                return old
            self._templates[key] = template
            errors["template_replaced"] += 1
            return template
        if self._per_exporter[template.exporter] >= self.limits.templates_per_exporter:
            errors["template_limit_exceeded"] += 1
            return None
        self._templates[key] = template
        self._per_exporter[template.exporter] += 1
        return template

    def withdraw(self, key: TemplateKey) -> bool:
        if self._templates.pop(key, None) is None:
            return False
        self._per_exporter[key[0]] -= 1
        return True

    def keys_of(
        self, exporter: ExporterKey, version: int, domain: int, options: bool
    ) -> list[TemplateKey]:
        return [
            k
            for k, t in self._templates.items()
            if k[0] == exporter and k[1] == version and k[2] == domain and t.is_options == options
        ]

    def snapshot(self) -> list[dict]:
        """Every template as a JSON-serialisable dict (see :meth:`Template.to_dict`)."""
        return [t.to_dict() for t in self._templates.values()]

    def restore(self, snapshot: list[dict]) -> int:
        """Load templates from :meth:`snapshot` output; returns how many were loaded."""
        errors: Counter = Counter()
        count = 0
        for d in snapshot:
            if self.define(Template.from_dict(d), errors) is not None:
                count += 1
        return count


@dataclass
class PendingSet:
    """A data set whose template had not arrived: the message header and the set itself."""

    exporter: ExporterKey
    header: bytes
    data_set: bytes  # including its 4-byte set header
    arrival_ns: int
    source_port: int = 0


class PendingBuffer:
    """Data sets waiting for their template: bounded in bytes, per exporter and in age."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._sets: OrderedDict[int, tuple[TemplateKey, PendingSet]] = OrderedDict()
        self._by_key: dict[TemplateKey, list[int]] = {}
        self._bytes = 0
        self._bytes_per_exporter: Counter = Counter()
        self._next_id = 0
        self.newest_ns = 0

    def __len__(self) -> int:
        return len(self._sets)

    @property
    def bytes(self) -> int:
        return self._bytes

    def keys(self) -> set[TemplateKey]:
        return set(self._by_key)

    def add(self, key: TemplateKey, item: PendingSet, errors: Counter) -> None:
        size = len(item.data_set) + len(item.header)
        if size > self.limits.pending_bytes_per_exporter:
            errors["pending_set_too_large"] += 1
            return
        while (
            self._bytes_per_exporter[item.exporter] + size > self.limits.pending_bytes_per_exporter
        ):
            self._evict_oldest(errors, exporter=item.exporter)
        while self._bytes + size > self.limits.pending_bytes:
            self._evict_oldest(errors)
        ident = self._next_id
        self._next_id += 1
        self._sets[ident] = (key, item)
        self._by_key.setdefault(key, []).append(ident)
        self._bytes += size
        self._bytes_per_exporter[item.exporter] += size

    def _remove(self, ident: int) -> tuple[TemplateKey, PendingSet]:
        key, item = self._sets.pop(ident)
        ids = self._by_key[key]
        ids.remove(ident)
        if not ids:
            del self._by_key[key]
        size = len(item.data_set) + len(item.header)
        self._bytes -= size
        self._bytes_per_exporter[item.exporter] -= size
        return key, item

    def _evict_oldest(self, errors: Counter, exporter: ExporterKey | None = None) -> None:
        for ident, (_key, item) in self._sets.items():
            if exporter is None or item.exporter == exporter:
                self._remove(ident)
                errors["pending_evicted_sets"] += 1
                return

    def expire(self, now_ns: int, errors: Counter) -> None:
        """Drop (and count) sets older than the age limit at time ``now_ns``."""
        self.newest_ns = max(self.newest_ns, now_ns)
        limit = self.newest_ns - self.limits.pending_age_ns
        stale = [i for i, (_k, item) in self._sets.items() if item.arrival_ns < limit]
        for ident in stale:
            self._remove(ident)
        if stale:
            errors["pending_expired_sets"] += len(stale)

    def take(self, key: TemplateKey) -> list[PendingSet]:
        """Remove and return the sets waiting for ``key``, oldest first."""
        ids = list(self._by_key.get(key, ()))
        return [self._remove(i)[1] for i in ids]

    def drain(self) -> list[tuple[TemplateKey, PendingSet]]:
        """Remove and return everything (at shutdown, to count what never decoded)."""
        out = [self._remove(i) for i in list(self._sets)]
        return out


def exporter_label(exporter: ExporterKey) -> str:
    addr = pair_to_address(*exporter)
    return str(addr) if not isinstance(addr, ipaddress.IPv6Address) else f"[{addr}]"
