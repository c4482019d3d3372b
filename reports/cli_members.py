"""`egress members ...`: inspect, validate, compare, record and query the member registry."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import click

from reports.cli import CONTEXT, _load, config_option, friendly_errors


@click.group(context_settings=CONTEXT)
def members() -> None:
    """Inspect and validate the member registry.

    \b
    Examples:
      egress members check -c egress.toml
      egress members list
      egress members lookup 10.1.2.3 --at 2026-11-20
      egress members diff && egress members apply
    """


@members.command("check", context_settings=CONTEXT)
@config_option
@friendly_errors
def members_check(config_path: Path | None) -> None:
    """Validate the configuration: errors (with key and reason) fail, warnings are listed.

    Errors: malformed prefixes, a prefix, interface or VLAN claimed by two members for
    overlapping periods, duplicate ids, unknown exporters, rules outside their member's
    validity, unknown keys... Warnings: nested prefixes of different members (the longer
    one wins) and members with no rule in force for part of their validity.

    \b
    Example:
      egress members check -c /etc/egress/egress.toml
    """
    config = _load(config_path)
    reg = config.registry
    rules = sum(
        len(m.prefix_rules) + len(m.interface_rules) + len(m.vlan_rules) for m in reg.members
    )
    for w in reg.warnings:
        click.echo(f"warning: {w}")
    click.echo(
        f"{config.path}: OK, {len(reg.members)} members, {rules} rules, "
        f"{len(reg.internal)} internal prefixes, {len(reg.warnings)} warning(s)"
    )


@members.command("list", context_settings=CONTEXT)
@config_option
@friendly_errors
def members_list(config_path: Path | None) -> None:
    """List the members with their attributes and rules.

    \b
    Example:
      egress members list -c egress.toml
    """
    config = _load(config_path)
    for m in config.members:
        extras = []
        if m.population is not None:
            extras.append(f"population {m.population:,}")
        if m.subscribed_mbps is not None:
            extras.append(f"{m.subscribed_mbps:g} Mb/s")
        if m.flat_monthly_cents is not None:
            extras.append(f"flat {m.flat_monthly_cents / 100:.2f} EUR/month")
        click.echo(f"{m.id}\t{m.name}\t{m.type}\tvalid {m.validity}\t{', '.join(extras)}")
        for r in m.prefix_rules:
            click.echo(f"\tprefix {r.network}\tvalid {r.validity}")
        for r in m.interface_rules:
            click.echo(f"\tinterface {r.exporter} ifIndex {r.ifindex}\tvalid {r.validity}")
        for r in m.vlan_rules:
            click.echo(f"\tvlan {r.exporter} VLAN {r.vlan}\tvalid {r.validity}")
    for r in config.registry.internal:
        click.echo(f"(internal)\t{r.network}\tvalid {r.validity}")


@members.command("lookup", context_settings=CONTEXT)
@config_option
@click.argument("address")
@click.option("--at", "at", help="Date or date-time (local), default now.")
@click.option("--exporter", help="With --ifindex or --vlan: the router that saw the traffic.")
@click.option("--ifindex", type=int, help="Interface the traffic crossed.")
@click.option("--vlan", type=int, help="VLAN the traffic arrived on.")
@friendly_errors
def members_lookup(
    config_path: Path | None,
    address: str,
    at: str | None,
    exporter: str | None,
    ifindex: int | None,
    vlan: int | None,
) -> None:
    """Which member an address (or an interface, a VLAN) belongs to at a time, and why.

    \b
    Examples:
      egress members lookup 10.1.2.3
      egress members lookup 10.9.0.5 --at 2026-11-14
      egress members lookup 100.64.1.2 --exporter 192.0.2.1 --ifindex 42
    """
    from zoneinfo import ZoneInfo

    from accounting.lookup import explain

    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        raise click.BadParameter(
            f"{address!r} is not an IP address", param_hint="ADDRESS"
        ) from None
    config = _load(config_path)
    zone = ZoneInfo(config.billing.timezone)
    if at is None:
        moment = dt.datetime.now(zone)
    else:
        try:
            parsed = dt.datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(
                f"{at!r} is not a date or date-time", param_hint="--at"
            ) from None
        moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    if (ifindex is not None or vlan is not None) and exporter is None:
        raise click.UsageError("--ifindex and --vlan need --exporter")
    click.echo(explain(config, addr, moment, exporter=exporter, ifindex=ifindex, vlan=vlan))


@members.command("diff", context_settings=CONTEXT)
@config_option
@friendly_errors
def members_diff(config_path: Path | None) -> None:
    """What the configuration file changes against the registry recorded in the database.

    \b
    Example:
      egress members diff -c /etc/egress/egress.toml
    """
    from accounting.registry_history import diff, first_open_day, latest_version, registry_document
    from accounting.store import Store

    config = _load(config_path)
    recorded = None
    if config.storage.database.exists():
        with Store.open(config.storage.database, read_only=True, wait_seconds=15) as store:
            recorded = latest_version(store)
    change = diff(recorded.document if recorded else None, registry_document(config.registry))
    if recorded is None:
        click.echo("no registry recorded yet: everything is new")
    elif change.empty:
        click.echo(
            f"no change against version {recorded.version_id} ({recorded.recorded_at:%Y-%m-%d %H:%M})"
        )
        return
    else:
        click.echo(
            f"against version {recorded.version_id} recorded {recorded.recorded_at:%Y-%m-%d %H:%M}:"
        )
    for label, items in (
        ("member added", change.added_members),
        ("member removed", change.removed_members),
        ("member attributes changed", change.changed_members),
    ):
        for item in items:
            click.echo(f"  {label}: {item}")
    for sign, rules in (("+", change.added_rules), ("-", change.removed_rules)):
        for member, kind, value, start, end in rules:
            click.echo(f"  {sign} {member}: {kind} {value} valid {start or '…'} to {end or '…'}")
    earliest = change.earliest_rule_change()
    if recorded is not None and earliest is not None:
        opened = first_open_day(config.billing.timezone)
        when = "always" if earliest == dt.date.min else earliest.isoformat()
        verdict = (
            "changes closed months: needs --allow-past-changes"
            if earliest < opened
            else "open month only"
        )
        click.echo(
            f"rules change from {when} ({verdict}); members affected: {', '.join(change.affected_members)}"
        )


@members.command("apply", context_settings=CONTEXT)
@config_option
@click.option(
    "--allow-past-changes",
    is_flag=True,
    help="Accept a change that reaches into closed months (recorded).",
)
@friendly_errors
def members_apply(config_path: Path | None, allow_past_changes: bool) -> None:
    """Record the configuration's registry as the current version in the database.

    `egress ingest` and `egress collect` do this by themselves, but refuse a change that
    alters the rules of a closed month; review it with `egress members diff`, then apply
    it here with --allow-past-changes (the version is recorded with that note).

    \b
    Example:
      egress members apply --allow-past-changes -c /etc/egress/egress.toml
    """
    from accounting.registry_history import record_registry
    from accounting.store import Store

    config = _load(config_path)
    with Store.open(config.storage.database, wait_seconds=15) as store:
        change, version = record_registry(
            store, config.registry, config.billing.timezone, allow_past_changes=allow_past_changes
        )
    if version is None:
        click.echo("no change: nothing recorded")
    else:
        click.echo(
            f"recorded registry version {version} ({len(change.affected_members)} member(s) affected)"
        )
