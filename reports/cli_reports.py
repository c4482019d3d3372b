"""The report outputs people use: `egress report` (every format, month to date),
`egress statements` (one PDF and one HTML per member) and `egress export usage`.

Long steps show a spinner or a progress bar on stderr when it is a terminal, and nothing
when it is piped (reports/progress.py).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import click

from reports.cli import CONTEXT, _load, config_option, friendly_errors

REPORT_FORMATS = ("table", "csv", "json", "html", "parquet")


def _rules(config) -> str:
    policy = config.sharing
    rules = dict.fromkeys((policy.rule, *policy.compare))
    return ", ".join(rules)


def run_report(
    config_path: Path | None, month: str, fmt: str, output: Path | None, as_of: str | None
) -> None:
    """`egress report`: compute the month (or the month so far) and write it in ``fmt``."""
    from accounting.bins import parse_month

    current = month == "current"
    if not current:
        parse_month(month)  # a bad --month is reported before anything is opened
        if as_of is not None:
            raise click.UsageError("--as-of goes with --month current")
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet writes a binary file: give -o FILE")
    config = _load(config_path)
    from accounting.store import Store
    from reports.progress import Spinner

    projection = None
    series = None
    with Spinner("reading usage") as spinner:

        def computing() -> None:
            spinner.set(f"computing the bill ({_rules(config)})")

        with Store.open(config.storage.database, read_only=True, wait_seconds=15) as store:
            if current:
                from reports.projection import build_projection, parse_as_of

                projection = build_projection(
                    config, store, parse_as_of(as_of, config.billing.timezone), computing
                )
                result, series = projection.report, projection.series
            elif fmt == "html":
                from reports.series import load_month

                result, series = load_month(config, store, month, on_read=computing)
            else:
                from reports.monthly import build_report
                from reports.series import SharedUsageStore

                result = build_report(config, SharedUsageStore(store, on_read=computing), month)
        spinner.set("writing the report")
        as_of_text = None if projection is None else projection.cutoff.isoformat()
        if fmt == "parquet":
            from reports.render.parquet import write_member_parquet

            write_member_parquet(result, output, projection and projection.cutoff)
            return
        if fmt == "json":
            from reports.render.json import report_dict

            data = report_dict(result)
            if projection is not None:
                data["projection"] = projection.as_dict()
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        elif fmt == "csv":
            from reports.render.csv import render_csv

            text = render_csv(
                result, None if as_of_text is None else {"projected_as_of": as_of_text}
            )
        elif fmt == "html":
            from reports.render.html import render_html

            spinner.set("drawing the charts")
            text = render_html(result, series, projection=projection and projection.lines())
        else:
            from reports.render.table import render_table

            text = render_table(result)
            if projection is not None:
                banner = "\n".join(projection.lines())
                text = f"{banner}\n\n{text}\n{banner.splitlines()[0]}\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _vat(value: str) -> Fraction:
    from decimal import Decimal, InvalidOperation

    try:
        rate = Decimal(value.replace(",", ".").rstrip("%").strip())
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a percentage", param_hint="--vat") from None
    if not rate.is_finite() or not 0 <= rate <= 100:
        raise click.BadParameter(f"{value!r}: give a rate from 0 to 100", param_hint="--vat")
    return Fraction(rate)


@click.command(context_settings=CONTEXT)
@config_option
@click.option("--month", "-m", required=True, help="Local calendar month, YYYY-MM.")
@click.option(
    "--output",
    "-o",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the statements to (created if needed).",
)
@click.option(
    "--lang",
    type=click.Choice(["fr", "en"]),
    default="fr",
    show_default=True,
    help="Language of the statements.",
)
@click.option(
    "--vat",
    default="20",
    show_default=True,
    help="VAT rate in percent, applied to each statement's amount (0 for none).",
)
@click.option(
    "--member",
    "member_ids",
    multiple=True,
    help="Only this member (repeat for several); default every member of the month.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes drawing the statements [default: the CPUs, at most 8].",
)
@friendly_errors
def statements(
    config_path: Path | None,
    month: str,
    directory: Path,
    lang: str,
    vat: str,
    member_ids: tuple[str, ...],
    jobs: int | None,
) -> None:
    """Write each member's monthly statement, as PDF and as HTML, in French or English.

    A statement shows the member's volumes, its own 95th percentile, its traffic in the
    bin that set the billed 95th, the amount due before and after VAT, the sharing rule in
    two sentences, its usage chart and how complete the data is. The amounts before VAT
    sum exactly to the invoice plus the syndicate's fee; VAT is computed on each statement
    and rounded to the cent. Files: DIR/<month>-<member>.pdf and .html, and
    DIR/<month>-statements.csv listing every amount.

    \b
    Examples:
      egress statements --month 2026-11 -o statements/2026-11
      egress statements --month 2026-11 -o /tmp/st --lang en --vat 0 --member mairie-a
    """
    from accounting.bins import parse_month

    parse_month(month)
    rate = _vat(vat)
    config = _load(config_path)
    from accounting.store import Store
    from reports.progress import Spinner, progress_bar
    from reports.render.statement import build_statements, format_eur
    from reports.series import load_month
    from reports.statement_files import default_jobs, write_statements

    with Spinner("reading usage") as spinner:

        def computing() -> None:
            spinner.set(f"computing the bill ({_rules(config)})")

        with Store.open(config.storage.database, read_only=True, wait_seconds=15) as store:
            report, series = load_month(config, store, month, on_read=computing)
    all_statements = build_statements(report, series, lang=lang, vat_percent=rate)
    chosen = all_statements
    if member_ids:
        known = {s.member_id for s in all_statements}
        unknown = [m for m in member_ids if m not in known]
        if unknown:
            raise click.BadParameter(
                f"not a member of {month}: {', '.join(unknown)}", param_hint="--member"
            )
        chosen = [s for s in all_statements if s.member_id in member_ids]
    with progress_bar(len(chosen), "statements") as bar:
        write_statements(
            report, series, chosen, directory, jobs=jobs or default_jobs(), advance=bar.update
        )
    summary = directory / f"{report.month.label}-statements.csv"
    _write_summary(summary, chosen)
    ht = sum(s.ht_cents for s in chosen)
    ttc = sum(s.ttc_cents for s in chosen)
    bill = report.bill
    click.echo(f"wrote {len(chosen)} statements (PDF and HTML) to {directory}, listed in {summary}")
    click.echo(
        f"total before VAT {format_eur(ht, 'en')} "
        + (
            f"= invoice {format_eur(bill.invoice_cents, 'en')} + fee {format_eur(bill.fee_cents, 'en')}"
            if not member_ids
            else f"for {len(chosen)} of {len(all_statements)} members"
        )
        + f"; with VAT {format_eur(ttc, 'en')} (VAT {float(rate):g}% per statement)"
    )


def _write_summary(path: Path, chosen) -> None:
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            ["month", "member_id", "name", "ht_cents", "vat_cents", "ttc_cents", "pdf", "html"]
        )
        for s in chosen:
            writer.writerow(
                [
                    s.month,
                    s.member_id,
                    s.name,
                    s.ht_cents,
                    s.vat_cents,
                    s.ttc_cents,
                    f"{s.file_stem}.pdf",
                    f"{s.file_stem}.html",
                ]
            )


@click.group(context_settings=CONTEXT)
def export() -> None:
    """Export a month's data for spreadsheets and BI tools.

    \b
    Examples:
      egress export usage --month 2026-11 --format parquet -o usage-2026-11.parquet
      egress report --month 2026-11 --format parquet -o members-2026-11.parquet
    """


@export.command("usage", context_settings=CONTEXT)
@config_option
@click.option("--month", "-m", required=True, help="Local calendar month, YYYY-MM.")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
    help="File format.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write.",
)
@friendly_errors
def export_usage(config_path: Path | None, month: str, fmt: str, output: Path) -> None:
    """Write a month's stored usage, one row per bin, bucket, member and direction.

    Columns: bin_start (UTC), bin_start_local (the billing time zone), bucket (member,
    internal, unattributed, not_uplink), member_id, direction (in, out, none), bytes,
    packets, flows. These are the rows every report is computed from.

    \b
    Examples:
      egress export usage --month 2026-11 -o usage-2026-11.parquet
      egress export usage --month 2026-11 --format csv -o usage-2026-11.csv
    """
    from accounting.bins import billing_month
    from accounting.store import Store
    from reports.monthly import ReportError
    from reports.progress import Spinner
    from reports.render.parquet import usage_frame, write_usage

    config = _load(config_path)
    billing = config.billing
    period = billing_month(month, billing.timezone, billing.bin_seconds)
    with Spinner("reading usage") as spinner:
        with Store.open(config.storage.database, read_only=True, wait_seconds=15) as store:
            usage = store.usage_between(period.start_utc, period.end_utc)
        if usage.height == 0:
            raise ReportError(f"no data for {period.label} in {config.storage.database}")
        spinner.set(f"writing {fmt}")
        frame = usage_frame(usage, billing.timezone)
        write_usage(frame, output, fmt)
    click.echo(f"wrote {frame.height:,} usage rows of {period.label} to {output}")
