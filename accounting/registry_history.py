"""Registry versions: every accepted member registry is recorded in the database, and a
change that would alter closed months is refused unless the user asks for it.

egress attributes traffic when it is ingested, with the rules valid at each bin's time,
and stores the result; a report of a past month reads what was stored then. A new
configuration could still change the past for data ingested later (a capture of October
ingested in December): such a change, one that alters the rules of a day before the
current month, is refused unless ``allow_past_changes`` is given, and is then recorded
with that note.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from accounting.registry import MemberConfig, Registry, Validity
from accounting.store import Store
from collector.errors import EgressError

Rule = tuple[str, str, str, str | None, str | None]  # member, kind, value, from, to


class PastChangeRefused(EgressError):
    """The new registry changes rules of closed months."""


def registry_document(registry: Registry) -> dict:
    """A canonical, JSON-ready description of the registry (what versions store)."""

    def day(d: dt.date | None) -> str | None:
        return None if d is None else d.isoformat()

    def member(m: MemberConfig) -> dict:
        return {
            "id": m.id,
            "name": m.name,
            "type": m.type,
            "population": m.population,
            "subscribed_mbps": m.subscribed_mbps,
            "flat_monthly_cents": m.flat_monthly_cents,
            "contact": m.contact,
            "valid_from": day(m.validity.valid_from),
            "valid_to": day(m.validity.valid_to),
            "prefixes": [
                [str(r.network), day(r.validity.valid_from), day(r.validity.valid_to)]
                for r in m.prefix_rules
            ],
            "interfaces": [
                [str(r.exporter), r.ifindex, day(r.validity.valid_from), day(r.validity.valid_to)]
                for r in m.interface_rules
            ],
            "vlans": [
                [str(r.exporter), r.vlan, day(r.validity.valid_from), day(r.validity.valid_to)]
                for r in m.vlan_rules
            ],
        }

    return {
        "members": [member(m) for m in registry.members],
        "internal_prefixes": [
            [str(r.network), day(r.validity.valid_from), day(r.validity.valid_to)]
            for r in registry.internal
        ],
    }


def _rules(doc: dict) -> set[Rule]:
    out: set[Rule] = set()
    for m in doc["members"]:
        for net, start, end in m["prefixes"]:
            out.add((m["id"], "prefix", net, start, end))
        for exporter, ifindex, start, end in m["interfaces"]:
            out.add((m["id"], "interface", f"{exporter} ifIndex {ifindex}", start, end))
        for exporter, vlan, start, end in m["vlans"]:
            out.add((m["id"], "vlan", f"{exporter} VLAN {vlan}", start, end))
    for net, start, end in doc["internal_prefixes"]:
        out.add(("(internal)", "prefix", net, start, end))
    return out


@dataclass
class RegistryDiff:
    """What a new registry changes against the recorded one."""

    added_members: list[str] = field(default_factory=list)
    removed_members: list[str] = field(default_factory=list)
    changed_members: list[str] = field(default_factory=list)  # attributes only
    added_rules: list[Rule] = field(default_factory=list)
    removed_rules: list[Rule] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.added_members
            or self.removed_members
            or self.changed_members
            or self.added_rules
            or self.removed_rules
        )

    @property
    def affected_members(self) -> list[str]:
        ids = {r[0] for r in (*self.added_rules, *self.removed_rules)}
        ids |= set(self.added_members) | set(self.removed_members) | set(self.changed_members)
        return sorted(ids)

    def earliest_rule_change(self) -> dt.date | None:
        """The first day whose rules in force differ (date.min: since always), or None.

        Rules in force only change on the days where a changed rule starts or the day
        after one ends, so those days (and the beginning of time) are the ones to test.
        """
        changed = (*self.added_rules, *self.removed_rules)
        days = {dt.date.min}
        for r in changed:
            if r[3]:
                days.add(dt.date.fromisoformat(r[3]))
            if r[4]:
                days.add(dt.date.fromisoformat(r[4]) + dt.timedelta(days=1))
        for day in sorted(days):
            if _in_force(self.added_rules, day) != _in_force(self.removed_rules, day):
                return day
        return None


def _in_force(rules: list[Rule], day: dt.date) -> set[tuple[str, str, str]]:
    """(member, kind, value) of the rules valid on ``day``."""
    out = set()
    for member, kind, value, start, end in rules:
        if (start is None or dt.date.fromisoformat(start) <= day) and (
            end is None or day <= dt.date.fromisoformat(end)
        ):
            out.add((member, kind, value))
    return out


def diff(old: dict | None, new: dict) -> RegistryDiff:
    if old is None:
        return RegistryDiff(
            added_members=[m["id"] for m in new["members"]],
            added_rules=sorted(_rules(new), key=str),
        )
    old_m = {m["id"]: m for m in old["members"]}
    new_m = {m["id"]: m for m in new["members"]}
    rule_keys = ("prefixes", "interfaces", "vlans")
    changed = [
        i
        for i in sorted(set(old_m) & set(new_m))
        if {k: v for k, v in old_m[i].items() if k not in rule_keys}
        != {k: v for k, v in new_m[i].items() if k not in rule_keys}
    ]
    old_r, new_r = _rules(old), _rules(new)
    return RegistryDiff(
        added_members=sorted(set(new_m) - set(old_m)),
        removed_members=sorted(set(old_m) - set(new_m)),
        changed_members=changed,
        added_rules=sorted(new_r - old_r, key=str),
        removed_rules=sorted(old_r - new_r, key=str),
    )


@dataclass(frozen=True)
class RecordedVersion:
    version_id: int
    recorded_at: dt.datetime
    sha256: str
    document: dict
    note: str


def latest_version(store: Store) -> RecordedVersion | None:
    row = store.con.execute(
        "SELECT version_id, recorded_at, registry_sha256, registry_json, note FROM registry_versions"
        " ORDER BY version_id DESC LIMIT 1"
    ).fetchall()
    if not row:
        return None
    v = row[0]
    return RecordedVersion(int(v[0]), v[1], v[2], json.loads(v[3]), v[4])


def _canonical(doc: dict) -> tuple[str, str]:
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False)
    return text, hashlib.sha256(text.encode()).hexdigest()


def first_open_day(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """The first day of the current local month: days before it belong to closed months."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(timezone))
    return local.date().replace(day=1)


def record_registry(
    store: Store,
    registry: Registry,
    timezone: str,
    *,
    allow_past_changes: bool = False,
    now: dt.datetime | None = None,
) -> tuple[RegistryDiff, int | None]:
    """Record the registry as a new version when it differs from the latest one.

    Returns the diff and the new version id (None when nothing changed). Raises
    PastChangeRefused when the change reaches into a closed month and
    ``allow_past_changes`` is false.
    """
    doc = registry_document(registry)
    text, sha = _canonical(doc)
    latest = latest_version(store)
    if latest is not None and latest.sha256 == sha:
        return RegistryDiff(), None
    change = diff(latest.document if latest else None, doc)
    note = "first version" if latest is None else ""
    earliest = change.earliest_rule_change()
    opened = first_open_day(timezone, now)
    if latest is not None and earliest is not None and earliest < opened:
        since = "always" if earliest == dt.date.min else earliest.isoformat()
        if not allow_past_changes:
            raise PastChangeRefused(
                f"the member registry changes attribution rules from {since}, inside closed months"
                f" (before {opened}); members affected: {', '.join(change.affected_members)}."
                " Review it with 'egress members diff'; apply it anyway with"
                " 'egress members apply --allow-past-changes'"
            )
        note = f"past changes allowed by the user (from {since})"
    version_id = int(
        store.con.execute(
            "INSERT INTO registry_versions (recorded_at, registry_sha256, registry_json, note)"
            " VALUES (?, ?, ?, ?) RETURNING version_id",
            [now or dt.datetime.now(dt.UTC), sha, text, note],
        ).fetchall()[0][0]
    )
    return change, version_id


def validity_text(v: Validity) -> str:
    return str(v)
