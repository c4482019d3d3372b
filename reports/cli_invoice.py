"""`egress invoice ...`: the operator's actual invoice for a month."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from reports.cli import CONTEXT, _load, config_option, friendly_errors


@click.group(context_settings=CONTEXT)
def invoice() -> None:
    """Enter the operator's actual invoice, which then takes precedence over the model.

    \b
    Examples:
      egress invoice set --month 2026-11 --eur 4123.45
      egress invoice show --month 2026-11
    """


@invoice.command("set", context_settings=CONTEXT)
@config_option
@click.option("--month", "-m", required=True, help="Local calendar month, YYYY-MM.")
@click.option("--eur", required=True, help="The amount invoiced, in euros (e.g. 4123.45).")
@click.option("--note", default="", help="Where the figure comes from (invoice number...).")
@friendly_errors
def invoice_set(config_path: Path | None, month: str, eur: str, note: str) -> None:
    """Record the operator's invoice for a month (replaces an earlier figure).

    \b
    Example:
      egress invoice set --month 2026-11 --eur 4123.45 --note "facture 2026-1187"
    """
    from accounting.bins import parse_month
    from accounting.store import Store

    year, number = parse_month(month)
    try:
        amount = Decimal(eur.replace(",", "."))
    except InvalidOperation:
        raise click.BadParameter(f"{eur!r} is not an amount in euros", param_hint="--eur") from None
    cents = amount * 100
    if not amount.is_finite() or amount < 0 or cents != cents.to_integral_value():
        raise click.BadParameter(
            f"{eur!r}: give euros >= 0 with at most two decimals", param_hint="--eur"
        )
    config = _load(config_path)
    label = f"{year:04d}-{number:02d}"
    with Store.open(config.storage.database, wait_seconds=15) as store:
        previous = store.set_invoice(label, int(cents), note)
    replaced = "" if previous is None else f" (replaces {previous / 100:.2f} EUR)"
    click.echo(f"{label}: operator's invoice {amount:.2f} EUR recorded{replaced}")


@invoice.command("show", context_settings=CONTEXT)
@config_option
@click.option("--month", "-m", required=True, help="Local calendar month, YYYY-MM.")
@friendly_errors
def invoice_show(config_path: Path | None, month: str) -> None:
    """Print the operator's invoice recorded for a month, if any.

    \b
    Example:
      egress invoice show --month 2026-11
    """
    from accounting.bins import parse_month
    from accounting.store import Store

    year, number = parse_month(month)
    label = f"{year:04d}-{number:02d}"
    config = _load(config_path)
    with Store.open(config.storage.database, read_only=True, wait_seconds=15) as store:
        cents = store.invoice_for(label)
    if cents is None:
        click.echo(f"{label}: no invoice recorded (the report uses the contract's model)")
    else:
        click.echo(f"{label}: {cents / 100:.2f} EUR")
