"""The ``egress`` command line: a thin click layer over accounting and reports.

Commands import their machinery lazily so that ``egress --help`` (and commands that only
read the store) never pay for numba. Every expected failure is an EgressError and prints
as ``Error: <message>`` with exit status 1; click's own usage errors exit with 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn EgressError (and a locked database) into a message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from collector.errors import EgressError

        try:
            return func(*args, **kwargs)
        except EgressError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Configuration file [default: $EGRESS_CONFIG, else ./egress.toml].",
    )(func)


def _load(config_path: Path | None):
    from accounting.config import load_config, resolve_config_path

    return load_config(resolve_config_path(str(config_path) if config_path else None))


def _interactive() -> bool:
    return sys.stderr.isatty()


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="egress", prog_name="egress")
def main() -> None:
    """Traffic accounting for a shared internet egress.

    Ingest NetFlow/IPFIX exports, attribute every byte to a member of the network, and
    share the operator's monthly invoice fairly.

    \b
    Examples:
      egress demo                          # synthetic capture -> database -> report
      egress members check -c egress.toml
      egress ingest exports.pcap
      egress report --month 2026-11 --format json
    """


@main.command(context_settings=CONTEXT)
@config_option
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--exporter",
    help="For IPFIX files (RFC 5655), which carry no sender address: the router that wrote them.",
)
@friendly_errors
def ingest(
    config_path: Path | None, files: tuple[Path, ...], quiet: bool, exporter: str | None
) -> None:
    """Ingest export captures (pcap, pcapng, or IPFIX files) into the database.

    Each file is committed in one transaction. A file already ingested (same SHA-256)
    is reported and skipped, so running the same command twice never counts twice.
    NetFlow v5, v9 and IPFIX datagrams are decoded; other frames are counted and skipped.

    \b
    Examples:
      egress ingest -c egress.toml router1-2026-11-05.pcap router2-2026-11-05.pcapng
      egress ingest --exporter 192.0.2.1 flows-2026-11-05.ipfix
    """
    if exporter is not None:
        import ipaddress

        try:
            ipaddress.ip_address(exporter)
        except ValueError:
            raise click.BadParameter(
                f"{exporter!r} is not an IP address", param_hint="--exporter"
            ) from None
    from accounting.ingest import ingest_file
    from accounting.members import compile_registry
    from accounting.store import Store
    from reports.summary import format_ingest_summary

    config = _load(config_path)
    table = compile_registry(config.registry, config.billing.timezone)
    with Store.open(config.storage.database) as store:
        for path in files:
            if _interactive() and not quiet:
                with click.progressbar(
                    length=path.stat().st_size, label=f"{path.name}", file=sys.stderr
                ) as bar:
                    seen = [0]

                    def advance(done: int, bar=bar, seen=seen) -> None:
                        bar.update(done - seen[0])
                        seen[0] = done

                    summary = ingest_file(
                        path, config, store, table=table, progress=advance, exporter=exporter
                    )
            else:
                summary = ingest_file(path, config, store, table=table, exporter=exporter)
            if not quiet:
                click.echo(format_ingest_summary(summary))


@main.command(context_settings=CONTEXT)
@config_option
@click.option(
    "--month",
    "-m",
    required=True,
    help="Local calendar month, YYYY-MM, or 'current' for the month so far with a projection.",
)
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "csv", "json", "html", "parquet"]),
    default="table",
    show_default=True,
    help="Output format (html: one self-contained page with charts; parquet needs -o).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of stdout.",
)
@click.option(
    "--as-of",
    help="With --month current: the moment to report at, an ISO time (default: now).",
)
@friendly_errors
def report(
    config_path: Path | None, month: str, fmt: str, output: Path | None, as_of: str | None
) -> None:
    """Print a month's per-member usage, 95th percentiles and invoice shares.

    --month current reports the month so far and projects its bill: the billed 95th over
    the bins elapsed so far, and each member's share of the invoice modelled at that rate,
    labelled as a projection in every format.

    \b
    Examples:
      egress report --month 2026-11
      egress report --month 2026-11 --format json -o 2026-11.json
      egress report --month 2026-11 --format csv > 2026-11.csv
      egress report --month 2026-11 --format html -o 2026-11.html
      egress report --month current
    """
    from reports.cli_reports import run_report

    run_report(config_path, month, fmt, output, as_of)


@main.command(context_settings=CONTEXT)
@config_option
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr: plain text, or one JSON object per line.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@friendly_errors
def collect(config_path: Path | None, log_format: str, log_level: str) -> None:
    """Run the collector service: receive NetFlow/IPFIX over UDP and account it.

    Listens on [collector] listen (default UDP 2055 and 4739, IPv4 and IPv6), accounts
    datagrams from the routers declared under [[exporters]], and commits to the database
    every flush_seconds (default 10). Everything read from the sockets is journaled first,
    so a crash loses nothing: the next start replays it. SIGTERM/SIGINT flush and stop;
    SIGHUP reloads members and exporters.

    \b
    Examples:
      egress collect -c /etc/egress/egress.toml
      egress collect --log-format json          # for a log shipper
      systemctl reload egress                   # SIGHUP: reload members and exporters
    """
    import signal
    import threading

    from collector.logs import setup_logging

    setup_logging(log_format, log_level)
    config = _load(config_path)
    from accounting.collect import run_collector

    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    run_collector(config, stop, reload)


@main.command(context_settings=CONTEXT)
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to", "target", required=True, help="Collector address, HOST:PORT ([HOST]:PORT for IPv6)."
)
@click.option("--rate", type=click.FloatRange(min=1), help="Datagrams per second.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001),
    help="Multiple of the capture's own pace (1 = real time).",
)
@click.option(
    "--shift-time-to",
    "shift_to",
    help="Move export times so the capture starts at this moment: 'now' or an ISO time.",
)
@click.option(
    "--source",
    help="Send everything from this local address (default: one 127.0.1.x per exporter on loopback).",
)
@friendly_errors
def replay(
    capture: Path,
    target: str,
    rate: float | None,
    speed: float | None,
    shift_to: str | None,
    source: str | None,
) -> None:
    """Send a capture's export datagrams to a collector over UDP.

    On a loopback target each original router gets its own 127.0.1.x source address, so
    declare those under [[exporters]] (the mapping is printed). Without --rate or --speed
    datagrams go out as fast as the socket takes them.

    \b
    Examples:
      egress replay exports.pcap --to 127.0.0.1:2055 --rate 5000
      egress replay exports.pcap --to [::1]:4739 --speed 10 --shift-time-to now
    """
    from datetime import datetime

    from accounting.collector_config import parse_listen
    from collector.replay import first_export_ms
    from collector.replay import replay as send

    if rate and speed:
        raise click.UsageError("give --rate or --speed, not both")
    try:
        endpoint = parse_listen(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    shift_ms = 0
    if shift_to:
        try:
            moment = datetime.now() if shift_to == "now" else datetime.fromisoformat(shift_to)
        except ValueError:
            raise click.BadParameter(
                f"{shift_to!r} is not 'now' or an ISO time", param_hint="--shift-time-to"
            ) from None
        first = first_export_ms(capture)
        if first is not None:
            shift_ms = int(moment.timestamp() * 1000) - first
    stats = send(
        capture,
        endpoint.host,
        endpoint.port,
        rate=rate,
        speed=speed,
        shift_ms=shift_ms,
        source=source,
    )
    for original, sent_from in stats.sources.items():
        click.echo(f"exporter {original} sent from {sent_from}")
    rate_done = stats.datagrams / stats.seconds if stats.seconds else 0
    click.echo(
        f"sent {stats.datagrams:,} datagrams ({stats.bytes:,} bytes) to {endpoint} in {stats.seconds:.2f} s ({rate_done:,.0f}/s)"
    )


@main.command(context_settings=CONTEXT)
@config_option
@friendly_errors
def status(config_path: Path | None) -> None:
    """Show the collector's state: last flush, exporters last seen, rates, loss, sizes.

    \b
    Example:
      egress status -c /etc/egress/egress.toml
    """
    config = _load(config_path)
    from accounting.status import collector_status
    from reports.render.status import render_status

    click.echo(render_status(collector_status(config)), nl=False)


@main.command(context_settings=CONTEXT)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("egress-demo"),
    show_default=True,
    help="Where to write the capture, the configuration and the database.",
)
@click.option("--members", "n_members", default=20, show_default=True, help="Synthetic members.")
@click.option("--flows", default=50_000, show_default=True, help="Synthetic flows.")
@friendly_errors
def demo(directory: Path, n_members: int, flows: int) -> None:
    """Run the whole job on a synthetic NetFlow v5 capture: no router needed.

    Generates a capture of two simulated routers (one sampling 1:10, one whose uptime
    wraps), writes a matching egress.toml, ingests the capture into a local DuckDB file
    and prints the month's report.

    \b
    Example:
      egress demo --dir /tmp/egress-demo && egress report -c /tmp/egress-demo/egress.toml -m 2026-11
    """
    if not 1 <= n_members <= 16_384:
        raise click.BadParameter("must be from 1 to 16384", param_hint="--members")
    if flows < 1:
        raise click.BadParameter("must be at least 1", param_hint="--flows")
    from accounting.config import load_config
    from accounting.ingest import ingest_file
    from accounting.store import Store
    from collector.synth.model import TrafficSpec
    from collector.synth.scenario import v5_scenario
    from reports.monthly import build_report
    from reports.render.table import render_table
    from reports.summary import format_ingest_summary

    spec = TrafficSpec(flows=flows, duration_ms=2 * 86_400_000, max_octets_share=0.0)
    scenario = v5_scenario(directory, members=n_members, spec=spec)
    click.echo(f"wrote {scenario.capture} ({scenario.datagrams} datagrams) and {scenario.config}")
    config = load_config(scenario.config)
    with Store.open(config.storage.database) as store:
        click.echo(format_ingest_summary(ingest_file(scenario.capture, config, store)))
        click.echo("")
        click.echo(render_table(build_report(config, store, "2026-11")), nl=False)


def _register_groups() -> None:
    from reports.cli_invoice import invoice
    from reports.cli_members import members
    from reports.cli_reports import export, statements

    main.add_command(members)
    main.add_command(invoice)
    main.add_command(statements)
    main.add_command(export)


_register_groups()

if __name__ == "__main__":  # pragma: no cover
    main()
