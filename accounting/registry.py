"""The member registry: who the members are, and the rules that say which traffic is theirs.

A member has attributes used by billing and reports (type, population, subscribed
capacity, flat subscription, contact) and rules, each with an optional validity period
(``valid_from`` / ``valid_to``: local calendar dates, both included):

- ``prefixes``: IPv4/IPv6 prefixes (the longest matching prefix wins, across members);
- ``interfaces``: (exporter, ifIndex) - traffic entering or leaving the router on it;
- ``vlans``: (exporter, VLAN id) - traffic arriving on that VLAN.

Precedence, for each end of a flow: an interface rule, then a VLAN rule (source end
only: the exported VLAN is the incoming one), then the longest matching prefix. The
``[registry] internal_prefixes`` are the GFU's own infrastructure: a flow touching them is
internal (not billed). Members can also come from a CSV file (``[registry] csv``), with
the same columns and the same validation, errors naming the line.
"""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from accounting.validation import Validator, euros_to_cents, is_int

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MEMBER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MEMBER_TYPES = ("commune", "epci", "department", "other")
CSV_COLUMNS = (
    "id",
    "name",
    "type",
    "population",
    "subscribed_mbps",
    "flat_monthly_eur",
    "contact",
    "valid_from",
    "valid_to",
    "prefixes",
)
MEMBER_KEYS = {*CSV_COLUMNS, "interfaces", "vlans"}  # a CSV line has no interface/VLAN rules


@dataclass(frozen=True, slots=True)
class Validity:
    """Local calendar days [valid_from, valid_to], both included; None = unbounded."""

    valid_from: dt.date | None = None
    valid_to: dt.date | None = None

    def overlaps(self, other: Validity) -> bool:
        lo = max(self.valid_from or dt.date.min, other.valid_from or dt.date.min)
        hi = min(self.valid_to or dt.date.max, other.valid_to or dt.date.max)
        return lo <= hi

    def intersect(self, other: Validity) -> Validity:
        starts = [d for d in (self.valid_from, other.valid_from) if d is not None]
        ends = [d for d in (self.valid_to, other.valid_to) if d is not None]
        return Validity(max(starts) if starts else None, min(ends) if ends else None)

    def within(self, outer: Validity) -> bool:
        return (self.valid_from or dt.date.min) >= (outer.valid_from or dt.date.min) and (
            self.valid_to or dt.date.max
        ) <= (outer.valid_to or dt.date.max)

    def covers(self, day: dt.date) -> bool:
        return (self.valid_from or dt.date.min) <= day <= (self.valid_to or dt.date.max)

    def __str__(self) -> str:
        if self.valid_from is None and self.valid_to is None:
            return "always"
        return f"{self.valid_from or '…'} to {self.valid_to or '…'}"


@dataclass(frozen=True, slots=True)
class PrefixRule:
    network: Network
    validity: Validity = Validity()


@dataclass(frozen=True, slots=True)
class InterfaceRule:
    exporter: Address
    ifindex: int
    validity: Validity = Validity()


@dataclass(frozen=True, slots=True)
class VlanRule:
    exporter: Address
    vlan: int
    validity: Validity = Validity()


@dataclass(frozen=True, slots=True)
class MemberConfig:
    id: str
    name: str
    prefix_rules: tuple[PrefixRule, ...] = ()
    interface_rules: tuple[InterfaceRule, ...] = ()
    vlan_rules: tuple[VlanRule, ...] = ()
    type: str = "other"
    population: int | None = None
    subscribed_mbps: float | None = None
    flat_monthly_cents: int | None = None
    contact: str | None = None
    validity: Validity = Validity()

    def __post_init__(self) -> None:
        # Bare networks are accepted for convenience (always-valid prefix rules).
        rules = tuple(r if isinstance(r, PrefixRule) else PrefixRule(r) for r in self.prefix_rules)
        object.__setattr__(self, "prefix_rules", rules)

    @property
    def prefixes(self) -> tuple[Network, ...]:
        """Every prefix of the member, whatever its validity."""
        return tuple(r.network for r in self.prefix_rules)


@dataclass(frozen=True, slots=True)
class Registry:
    members: tuple[MemberConfig, ...] = ()
    internal: tuple[PrefixRule, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)


def parse_registry(
    v: Validator,
    members_raw: Any,
    registry_raw: Any,
    config_path: Path,
    exporters: set[Address] | None = None,
) -> Registry:
    """[[members]] and [registry] (csv, internal_prefixes) into a validated Registry."""
    registry_raw = v.table(registry_raw if registry_raw is not None else {}, "registry")
    v.unknown_keys(registry_raw, {"csv", "internal_prefixes"}, "registry")
    located: list[tuple[MemberConfig, str]] = []  # each member and where it was written
    if not isinstance(members_raw, list):
        v.add("members", "must be an array of tables: [[members]]")
        members_raw = []
    for i, entry in enumerate(members_raw):
        m = _member(v, entry, f"members[{i}]")
        if m is not None:
            located.append((m, f"members[{i}] (id {m.id!r})"))
    if "csv" in registry_raw:
        located += _csv_members(v, registry_raw["csv"], config_path)
    members = [m for m, _ in located]
    internal = []
    raw_internal = registry_raw.get("internal_prefixes", [])
    if not isinstance(raw_internal, list):
        v.add("registry.internal_prefixes", "must be a list of prefixes")
        raw_internal = []
    for j, item in enumerate(raw_internal):
        rule = _prefix_rule(v, item, f"registry.internal_prefixes[{j}]")
        if rule is not None:
            internal.append(rule)
    warnings = _cross_checks(v, located, internal, exporters)
    return Registry(tuple(members), tuple(internal), tuple(warnings))


def _member(v: Validator, entry: Any, where: str) -> MemberConfig | None:
    entry = v.table(entry, where)
    mid = entry.get("id")
    if isinstance(mid, str):
        where = f"{where} (id {mid!r})"
    v.unknown_keys(entry, MEMBER_KEYS, where)
    ok = True
    if not isinstance(mid, str) or not MEMBER_ID.match(mid):
        v.add(
            f"{where}.id",
            f"must be 1-64 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit, got {mid!r}",
        )
        ok = False
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        v.add(f"{where}.name", "must be a non-empty string")
        name = mid if isinstance(mid, str) else ""
    kind = entry.get("type", "other")
    if kind not in MEMBER_TYPES:
        v.add(f"{where}.type", f"must be one of {', '.join(MEMBER_TYPES)}, got {kind!r}")
        kind = "other"
    population = entry.get("population")
    if population is not None and (not is_int(population) or population < 0):
        v.add(f"{where}.population", f"must be a whole number >= 0, got {population!r}")
        population = None
    mbps = entry.get("subscribed_mbps")
    if mbps is not None and (
        isinstance(mbps, bool) or not isinstance(mbps, int | float) or mbps < 0
    ):
        v.add(f"{where}.subscribed_mbps", f"must be a number of Mb/s >= 0, got {mbps!r}")
        mbps = None
    flat = entry.get("flat_monthly_eur")
    flat_cents = (
        None
        if flat is None
        else euros_to_cents(v, f"{where}.flat_monthly_eur", flat, allow_text=True)
    )
    contact = entry.get("contact")
    if contact is not None and not isinstance(contact, str):
        v.add(f"{where}.contact", "must be a string")
        contact = None
    validity = _validity(v, entry, where)
    prefixes = _list(v, entry, "prefixes", where)
    prefix_rules = [
        r
        for j, item in enumerate(prefixes)
        if (r := _prefix_rule(v, item, f"{where}.prefixes[{j}]"))
    ]
    seen: dict[tuple, int] = {}
    for j, r in enumerate(prefix_rules):
        key = (r.network, r.validity)
        if key in seen:
            v.add(f"{where}.prefixes[{j}]", f"{r.network} is listed twice for this member")
        seen[key] = j
    interface_rules = [
        r
        for j, item in enumerate(_list(v, entry, "interfaces", where))
        if (
            r := _port_rule(
                v, item, f"{where}.interfaces[{j}]", "ifindex", 2**32 - 1, InterfaceRule
            )
        )
    ]
    vlan_rules = [
        r
        for j, item in enumerate(_list(v, entry, "vlans", where))
        if (r := _port_rule(v, item, f"{where}.vlans[{j}]", "vlan", 4095, VlanRule))
    ]
    for kind_name, rules in (
        ("prefixes", prefix_rules),
        ("interfaces", interface_rules),
        ("vlans", vlan_rules),
    ):
        for j, r in enumerate(rules):
            dated = r.validity.valid_from is not None or r.validity.valid_to is not None
            if dated and not r.validity.within(validity):
                v.add(
                    f"{where}.{kind_name}[{j}]",
                    f"valid {r.validity}, outside the member's own validity ({validity})",
                )
            # A rule is in force only while its member is: its validity is the intersection.
            rules[j] = replace(r, validity=r.validity.intersect(validity))
    if not ok:
        return None
    return MemberConfig(
        mid,
        name,
        tuple(prefix_rules),
        tuple(interface_rules),
        tuple(vlan_rules),
        kind,
        population,
        None if mbps is None else float(mbps),
        flat_cents,
        contact,
        validity,
    )


def _list(v: Validator, entry: dict, key: str, where: str) -> list:
    value = entry.get(key, [])
    if not isinstance(value, list):
        v.add(f"{where}.{key}", "must be a list")
        return []
    return value


def _date(v: Validator, value: Any, key: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        v.add(key, f"must be a date (2026-11-15), not a date-time: {value.isoformat()}")
        return None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    v.add(key, f"must be a date such as 2026-11-15, got {value!r}")
    return None


def _validity(v: Validator, entry: dict, where: str) -> Validity:
    start = _date(v, entry.get("valid_from"), f"{where}.valid_from")
    end = _date(v, entry.get("valid_to"), f"{where}.valid_to")
    if start and end and end < start:
        v.add(f"{where}.valid_to", f"{end} is before valid_from {start}")
        return Validity(start, None)
    return Validity(start, end)


def _network(v: Validator, key: str, text: Any) -> Network | None:
    if not isinstance(text, str):
        v.add(key, f"must be a string such as '10.1.0.0/16', got {text!r}")
        return None
    if "/" not in text:
        v.add(key, f"{text!r} has no prefix length (write e.g. '{text}/32')")
        return None
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        reason = str(exc)
        if "host bits set" in reason:
            fixed = ipaddress.ip_network(text, strict=False)
            v.add(key, f"{text!r} has host bits set (did you mean '{fixed}'?)")
        else:
            v.add(key, f"{text!r} is not a valid IPv4/IPv6 prefix: {reason}")
        return None


def _prefix_rule(v: Validator, item: Any, key: str) -> PrefixRule | None:
    """'10.1.0.0/16' or {prefix = '10.1.0.0/16', valid_from = ..., valid_to = ...}."""
    if isinstance(item, dict):
        v.unknown_keys(item, {"prefix", "valid_from", "valid_to"}, key)
        net = _network(v, f"{key}.prefix", item.get("prefix"))
        validity = _validity(v, item, key)
        return None if net is None else PrefixRule(net, validity)
    net = _network(v, key, item)
    return None if net is None else PrefixRule(net)


def _port_rule(v: Validator, item: Any, key: str, field_name: str, limit: int, cls):
    """{exporter = '192.0.2.1', ifindex|vlan = N, valid_from = ..., valid_to = ...}."""
    item = v.table(item, key)
    v.unknown_keys(item, {"exporter", field_name, "valid_from", "valid_to"}, key)
    try:
        exporter = ipaddress.ip_address(str(item.get("exporter", "")))
    except ValueError:
        v.add(
            f"{key}.exporter",
            f"must be the exporting router's address, got {item.get('exporter')!r}",
        )
        return None
    number = item.get(field_name)
    if not is_int(number) or not 0 <= number <= limit:
        v.add(f"{key}.{field_name}", f"must be a whole number from 0 to {limit}, got {number!r}")
        return None
    return cls(exporter, number, _validity(v, item, key))


def _csv_members(v: Validator, raw_path: Any, config_path: Path) -> list[tuple[MemberConfig, str]]:
    """Members from a CSV file (a spreadsheet export): one line per member, CSV_COLUMNS,
    separated by ',', ';' or tabs (guessed from the header); prefixes separated by spaces
    or semicolons, and may spill into the cells after the last column. Errors name
    'file:line'."""
    if not isinstance(raw_path, str) or not raw_path.strip():
        v.add("registry.csv", "must be a path string")
        return []
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        path = config_path.parent / path
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        v.add("registry.csv", f"{path}: cannot be read: {exc.strerror or exc}")
        return []
    first = text.split("\n", 1)[0]
    # Spreadsheets in French locales write ';' (the comma is the decimal mark).
    delimiter = max(",;\t", key=first.count)
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter, restkey="__more__")
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        v.add(
            f"{path.name}:1",
            f"unknown column(s) {', '.join(unknown)} (allowed: {', '.join(CSV_COLUMNS)})",
        )
    for required in ("id", "name"):
        if required not in header:
            v.add(f"{path.name}:1", f"missing column {required!r}")
    if unknown or "id" not in header or "name" not in header:
        return []
    out = []
    for line_no, row in enumerate(reader, start=2):
        more = row.pop("__more__", None) or []  # prefixes spilling into further cells
        row = {(k or "").strip(): (val or "").strip() for k, val in row.items()}
        row["prefixes"] = " ".join([row.get("prefixes", ""), *more])
        if not any(row.values()):
            continue
        entry: dict[str, Any] = {"id": row.get("id"), "name": row.get("name")}
        for key in ("type", "contact", "valid_from", "valid_to"):
            if row.get(key):
                entry[key] = row[key]
        if row.get("flat_monthly_eur"):  # '80,00' (French) or '80.00'
            entry["flat_monthly_eur"] = row["flat_monthly_eur"].replace(" ", "").replace(",", ".")
        for key, conv in (("population", int), ("subscribed_mbps", float)):
            if row.get(key):
                try:
                    entry[key] = conv(row[key].replace(" ", "").replace(",", "."))
                except ValueError:
                    v.add(f"{path.name}:{line_no}.{key}", f"not a number: {row[key]!r}")
        entry["prefixes"] = [p for p in re.split(r"[\s;]+", row.get("prefixes", "")) if p]
        member = _member(v, entry, f"{path.name}:{line_no}")
        if member is not None:
            out.append((member, f"{path.name}:{line_no} (id {member.id!r})"))
    return out


def _cross_checks(
    v: Validator,
    located: list[tuple[MemberConfig, str]],
    internal: list[PrefixRule],
    exporters: set[Address] | None,
) -> list[str]:
    """Problems between members (errors) and things worth knowing (returned warnings)."""
    warnings: list[str] = []
    members = [m for m, _ in located]
    ids: dict[str, str] = {}
    for m, where in located:
        if m.id in ids:
            v.add(f"{where}.id", f"duplicate member id {m.id!r} (also {ids[m.id]})")
        ids.setdefault(m.id, where)
    claims: dict[Any, list[tuple[str, Validity, str]]] = {}
    for m, where in located:
        for j, r in enumerate(m.prefix_rules):
            claims.setdefault(("prefix", r.network), []).append(
                (m.id, r.validity, f"{where}.prefixes[{j}]")
            )
        for j, r in enumerate(m.interface_rules):
            claims.setdefault(("interface", r.exporter, r.ifindex), []).append(
                (m.id, r.validity, f"{where}.interfaces[{j}]")
            )
        for j, r in enumerate(m.vlan_rules):
            claims.setdefault(("vlan", r.exporter, r.vlan), []).append(
                (m.id, r.validity, f"{where}.vlans[{j}]")
            )
    for j, r in enumerate(internal):
        claims.setdefault(("prefix", r.network), []).append(
            ("(internal)", r.validity, f"registry.internal_prefixes[{j}]")
        )
    for key, owners in claims.items():
        for b in range(1, len(owners)):
            for a in range(b):
                (ma, va, _), (mb, vb, where_b) = owners[a], owners[b]
                if ma != mb and va.overlaps(vb):
                    whole = (
                        va.valid_from is None
                        and va.valid_to is None
                        and vb.valid_from is None
                        and vb.valid_to is None
                    )
                    period = "" if whole else " for an overlapping period"
                    v.add(where_b, f"{_describe(key)} is already claimed by member {ma!r}{period}")
                    break
    warnings += _nested_prefixes(members)
    if exporters is not None:
        for m, where in located:
            for kind, rules in (("interfaces", m.interface_rules), ("vlans", m.vlan_rules)):
                for j, r in enumerate(rules):
                    if r.exporter not in exporters:
                        v.add(
                            f"{where}.{kind}[{j}].exporter",
                            f"{r.exporter} is not declared under [[exporters]]",
                        )
    for m in members:
        if not (m.prefix_rules or m.interface_rules or m.vlan_rules):
            warnings.append(
                f"gap: member {m.id!r} has no rule at all (no traffic can be attributed to it)"
            )
            continue
        gap = _uncovered(m)
        if gap is not None:
            warnings.append(
                f"gap: member {m.id!r} has no rule valid on {gap} (inside its own validity)"
            )
    return warnings


def _nested_prefixes(members: list[MemberConfig]) -> list[str]:
    """Warnings for prefixes lying inside another member's prefix (allowed: the longer
    wins). One sweep over the prefixes sorted by start address: the stack holds the
    prefixes enclosing the current one, innermost on top. O(n log n)."""
    nets = sorted(
        {(r.network, m.id) for m in members for r in m.prefix_rules},
        key=lambda item: (item[0].version, int(item[0].network_address), item[0].prefixlen),
    )
    out = []
    stack: list[tuple[Network, str]] = []
    for net, owner in nets:
        while stack and (
            stack[-1][0].version != net.version
            or int(stack[-1][0].broadcast_address) < int(net.network_address)
        ):
            stack.pop()
        for outer, outer_owner in reversed(stack):
            if outer_owner != owner:
                out.append(
                    f"overlap: {net} ({owner}) lies inside {outer} ({outer_owner}); the longer prefix wins"
                )
                break
        stack.append((net, owner))
    return out


def _uncovered(m: MemberConfig) -> dt.date | None:
    """A day inside the member's validity that none of its rules covers (None if none)."""
    rules = [r.validity for r in (*m.prefix_rules, *m.interface_rules, *m.vlan_rules)]
    candidates = {m.validity.valid_from or dt.date.min}
    for r in rules:
        if r.valid_to is not None and r.valid_to < dt.date.max:
            candidates.add(r.valid_to + dt.timedelta(days=1))
    for day in sorted(candidates):
        if m.validity.covers(day) and not any(r.covers(day) for r in rules):
            return None if day == dt.date.min else day
    return None


def _describe(key: tuple) -> str:
    if key[0] == "prefix":
        return str(key[1])
    if key[0] == "interface":
        return f"interface {key[2]} of exporter {key[1]}"
    return f"VLAN {key[2]} of exporter {key[1]}"
