"""The monthly report as one self-contained HTML page (``egress report --format html``).

Everything is in the file: the CSS inline, the charts as inline SVG (matplotlib, see
reports/render/charts.py), no script, no font, no image from anywhere else, so the page
works offline, prints as it shows, and can be mailed as is. Every string that comes from
the configuration or the database (member names and ids, notes, exporter addresses) goes
through ``html.escape``. Raw figures (bytes, cents) ride along in ``data-value``
attributes so that tools and tests can read the table without parsing formatted numbers.
"""

from __future__ import annotations

import html
from zoneinfo import ZoneInfo

import numpy as np

from reports.monthly import MonthlyReport, format_datetime
from reports.render import charts
from reports.render.table import RULE_LABELS, euros, human_bytes, human_rate
from reports.series import MonthSeries

CSS = """
:root { --muted: #666; --line: #ddd; --chosen: #fff6d6; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: #222; margin: 1.5em;
       font-size: 10pt; line-height: 1.35; }
h1 { font-size: 1.5em; margin: 0 0 0.3em; }
h2 { font-size: 1.15em; margin: 1.6em 0 0.5em; border-bottom: 1px solid var(--line); }
.banner { background: #fde8e8; border: 1px solid #d62728; padding: 0.6em 0.8em;
          margin: 0.6em 0; }
.figures { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.8em 0; }
.figure-card { border: 1px solid var(--line); border-radius: 4px; padding: 0.5em 0.8em;
               min-width: 12em; }
.figure-card .label { color: var(--muted); font-size: 0.85em; }
.figure-card .value { font-size: 1.25em; font-weight: bold; }
ul.lines { margin: 0.3em 0; padding-left: 1.2em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 0.2em 0.45em; text-align: right;
         vertical-align: middle; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
td { white-space: nowrap; }
td.name { min-width: 10em; max-width: 18em; overflow-wrap: anywhere; white-space: normal; }
td.chosen, th.chosen { background: var(--chosen); }
tfoot td { font-weight: bold; border-top: 2px solid #999; }
.over { color: #b00; }
.muted { color: var(--muted); }
figure { margin: 0.5em 0; }
figure svg { max-width: 100%; height: auto; }
svg.spark { display: block; }
code { font-size: 0.9em; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
@media print {
  body { margin: 0.5cm; font-size: 8pt; }
  th { position: static; }
  h2 { break-after: avoid; }
  tr, figure { break-inside: avoid; }
  .scroll { overflow: visible; }
}
"""


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _card(label: str, value: str, title: str = "") -> str:
    hint = f' title="{e(title)}"' if title else ""
    return (
        f'<div class="figure-card"{hint}><div class="label">{e(label)}</div>'
        f'<div class="value">{e(value)}</div></div>'
    )


def _local(report: MonthlyReport, moment) -> str:
    return format_datetime(moment.astimezone(ZoneInfo(report.month.timezone)))


def render_html(
    report: MonthlyReport,
    series: MonthSeries,
    *,
    projection: list[str] | None = None,
    peak_half_bins: int = 12,
) -> str:
    """The page. ``projection``: lines of the month-to-date banner (see reports/projection.py)."""
    m = report.month
    bill = report.bill
    p = report.percentile
    billed_bin = bill.billed_bins["billed"]
    billed_at = report.bin_time(billed_bin)
    title = f"egress report {m.label}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title + (' (projection)' if projection else ''))}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)} <span class='muted'>({e(m.timezone)})</span></h1>",
    ]
    if projection:
        parts.append('<div class="banner" id="projection"><strong>Projection</strong>')
        parts.append('<ul class="lines">' + "".join(f"<li>{e(x)}</li>" for x in projection))
        parts.append("</ul></div>")
    parts.append(
        "<p>"
        f"local {e(format_datetime(m.start_local))} .. {e(format_datetime(m.end_local))}<br>"
        f"UTC {e(format_datetime(m.start_utc))} .. {e(format_datetime(m.end_utc))}</p>"
    )
    cards = [
        _card("invoice", f"{euros(bill.invoice_cents)} EUR", "the amount shared among members"),
        _card("to collect (invoice + fee)", f"{euros(bill.total_cents)} EUR"),
        _card(
            f"billed {p}th ({bill.billed.direction})",
            human_rate(float(report.bps(bill.billed.bytes))),
        ),
        _card(f"aggregate {p}th in", human_rate(float(report.bps(bill.billed.p95_in)))),
        _card(f"aggregate {p}th out", human_rate(float(report.bps(bill.billed.p95_out)))),
        _card("rule", bill.policy.rule),
        _card("bins with data", f"{report.bins_with_data:,} of {m.bin_count:,}"),
    ]
    if bill.contract.commit_mbps is not None:
        cards.insert(3, _card("commit", f"{float(bill.contract.commit_mbps):g} Mb/s"))
    parts.append('<div class="figures" id="key-figures">' + "".join(cards) + "</div>")
    parts.append("<h2>Contract, invoice and rules</h2>")
    parts.append('<ul class="lines" id="summary">')
    parts += [f"<li>{e(line)}</li>" for line in bill.summary()]
    if billed_at is not None:
        parts.append(
            f"<li>the billed {p}th is set by the bin starting {e(format_datetime(billed_at))} "
            f"UTC ({e(_local(report, billed_at))} local)</li>"
        )
    parts.append(
        f"<li>chosen rule: {e(bill.policy.rule)} ({e(bill.allocation.basis)}); compared: "
        f"{e(', '.join(bill.alternatives))}</li>"
    )
    parts.append("</ul>")

    parts.append("<h2>Aggregate rate per bin</h2>")
    parts.append(
        f"<p class='muted'>Members and unattributed traffic of known direction, per "
        f"{m.bin_seconds} s bin; dashed: the aggregate {p}th in and out"
        + ("; dash-dot: the commit" if bill.contract.commit_mbps is not None else "")
        + "; dotted: the bin that sets the billed value. Gaps: bins without data.</p>"
    )
    parts.append(f'<figure id="aggregate-chart">{charts.aggregate_svg(report, series)}</figure>')
    parts.append(f"<h2>Who drives the billed {p}th</h2>")
    parts.append(
        f"<p class='muted'>Each member's traffic ({e(bill.billed.direction)}) in the bins "
        f"around the one that sets the billed {p}th (± {peak_half_bins} bins, outlined in "
        "red), stacked; the members with most traffic in that bin by name.</p>"
    )
    parts.append(
        f'<figure id="peak-chart">{charts.peak_svg(report, series, half=peak_half_bins)}</figure>'
    )
    parts.append(_allocation_table(report, series))
    parts.append(_completeness(report))
    notes = [*report.notes]
    for rule, allocation in bill.alternatives.items():
        notes += [f"({rule}) {n}" for n in allocation.notes if n not in notes]
        if allocation.shapley is not None:
            notes.append(f"({rule}) {allocation.shapley.describe()}")
    if notes:
        parts.append("<h2>Notes</h2>")
        parts.append('<ul class="lines" id="notes">')
        parts += [f"<li>{e(n)}</li>" for n in dict.fromkeys(notes)]
        parts.append("</ul>")
    parts.append("<h2>Reproducibility</h2>")
    parts.append(f'<p><code id="reproducibility">{e(bill.reproducibility())}</code></p>')
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


def _allocation_table(report: MonthlyReport, series: MonthSeries) -> str:
    bill = report.bill
    p = report.percentile
    rules = list(bill.alternatives)
    direction = bill.billed.direction
    billed_bin = bill.billed_bins["billed"]
    column = series.column_of(billed_bin)
    at_peak = (
        np.zeros(len(series.member_ids), np.int64)
        if column is None
        else series.members(direction)[:, column]
    )
    peak_total = 0 if column is None else int(series.aggregate(direction)[column])
    rule_heads = "".join(
        f'<th class="{"chosen" if r == bill.policy.rule else ""}" data-rule="{e(r)}">'
        f"{e(RULE_LABELS.get(r, r))}{' (used)' if r == bill.policy.rule else ''}</th>"
        for r in rules
    )
    head = (
        "<thead><tr>"
        '<th class="text">member</th><th class="text">name</th>'
        '<th class="text">usage over the month</th>'
        "<th>in</th><th>out</th>"
        f"<th>own P{p} in</th><th>own P{p} out</th>"
        f"<th title='its traffic in the bin that sets the billed {p}th'>at the peak</th>"
        "<th>pays EUR</th>"
        f"{rule_heads}<th>fee</th>"
        "<th title='what it would pay alone under the contract'>alone</th>"
        "<th>flat</th><th>balance</th>"
        "</tr></thead>"
    )
    rows = []
    bins = report.month.bin_count
    for x in report.members:
        row = series.row(x.id)
        b = x.bill
        peak_bytes = int(at_peak[row])
        share = "" if peak_total <= 0 else f" ({100 * peak_bytes / peak_total:.1f}%)"
        spark = charts.sparkline(
            series.dense(series.inbound[row], bins),
            series.dense(series.outbound[row], bins),
            billed_bin,
            width=120,
        )
        cells = [
            f'<td class="text"><code>{e(x.id)}</code></td>',
            f'<td class="text name">{e(x.name)}</td>',
            f'<td class="text">{spark}</td>',
            f'<td data-value="{x.bytes_in}">{e(human_bytes(x.bytes_in))}</td>',
            f'<td data-value="{x.bytes_out}">{e(human_bytes(x.bytes_out))}</td>',
            f"<td>{e(human_rate(float(report.bps(x.p95_in_bytes))))}</td>",
            f"<td>{e(human_rate(float(report.bps(x.p95_out_bytes))))}</td>",
            f'<td data-value="{peak_bytes}">'
            f"{e(human_rate(float(report.bps(peak_bytes))))}{e(share)}</td>",
            f'<td class="pays" data-value="{x.share_cents}"><strong>'
            f"{e(euros(x.share_cents))}</strong></td>",
            *(
                f'<td class="{"chosen" if r == bill.policy.rule else ""}" '
                f'data-rule="{e(r)}" data-value="{b.alternatives.get(r, "")}">'
                f"{e(euros(b.alternatives.get(r)))}</td>"
                for r in rules
            ),
            f'<td data-value="{b.fee_cents}">{e(euros(b.fee_cents))}</td>',
            f'<td data-value="{b.standalone_cents}"'
            f' class="{"over" if b.exceeds_standalone else "within"}">'
            f"{e(euros(b.standalone_cents))}</td>",
            f'<td data-value="{"" if b.flat_cents is None else b.flat_cents}">'
            f"{e(euros(b.flat_cents))}</td>",
            f'<td data-value="{"" if b.balance_cents is None else b.balance_cents}">'
            f"{e(euros(b.balance_cents))}</td>",
        ]
        rows.append(f'<tr data-member="{e(x.id)}">' + "".join(cells) + "</tr>")
    members = report.members
    total_in = sum(x.bytes_in for x in members)
    total_out = sum(x.bytes_out for x in members)
    total_peak = int(at_peak.sum())
    rule_totals = {r: sum(x.bill.alternatives.get(r, 0) for x in members) for r in rules}
    fee_total = sum(x.bill.fee_cents for x in members)
    pays_total = sum(x.share_cents for x in members)
    foot = (
        '<tfoot><tr id="totals">'
        '<td class="text">total</td>'
        f'<td class="text">{len(members)} members</td><td></td>'
        f'<td data-total="bytes_in" data-value="{total_in}">{e(human_bytes(total_in))}</td>'
        f'<td data-total="bytes_out" data-value="{total_out}">{e(human_bytes(total_out))}</td>'
        "<td></td><td></td>"
        f'<td data-total="at_peak" data-value="{total_peak}">'
        f"{e(human_rate(float(report.bps(total_peak))))}</td>"
        f'<td data-total="share" data-value="{pays_total}">{e(euros(pays_total))}</td>'
        + "".join(
            f'<td class="{"chosen" if r == bill.policy.rule else ""}" data-total="rule:{e(r)}" '
            f'data-value="{rule_totals[r]}">{e(euros(rule_totals[r]))}</td>'
            for r in rules
        )
        + f'<td data-total="fee" data-value="{fee_total}">{e(euros(fee_total))}</td>'
        "<td></td><td></td><td></td></tr></tfoot>"
    )
    intro = (
        f"<h2>Allocation</h2><p class='muted'>Each rule shares the same usage part of the "
        f"invoice ({e(euros(bill.usage_cents))} EUR) plus the fixed part "
        f"({e(euros(bill.fixed_cents))} EUR); the highlighted rule is the one used. "
        "<em>pays</em> adds the syndicate's fee. <em>alone</em>: what the member would pay "
        "alone under the contract (red when its share is above it). <em>at the peak</em>: its "
        f"traffic in the bin that sets the billed {p}th. Sparklines: in (blue) and out "
        "(orange) over the month, the billed bin in red.</p>"
    )
    return (
        intro
        + '<div class="scroll"><table id="allocation">'
        + head
        + "<tbody>"
        + "\n".join(rows)
        + "</tbody>"
        + foot
        + "</table></div>"
    )


def _completeness(report: MonthlyReport) -> str:
    from reports.render.statement import unknown_sampling

    m = report.month
    out = ["<h2>Completeness</h2>", '<ul class="lines" id="completeness">']
    out.append(
        f"<li>{report.bins_with_data:,} of {m.bin_count:,} bins hold data; "
        f"{report.missing_bins:,} without data ("
        + (
            "excluded from the percentile"
            if report.bill.semantics.missing == "exclude"
            else "counted as zero traffic"
        )
        + ")</li>"
    )
    out.append(f"<li>kernel receive-buffer drops: {report.kernel_drops:,}</li>")
    unknown = unknown_sampling(report)
    out.append(f"<li>flows with an unknown sampling rate (counted 1:1): {unknown:,}</li>")
    for kind in ("dropped", "skipped", "note"):
        values = report.counters.get(kind, {})
        if values:
            listed = ", ".join(f"{k} {v:,}" for k, v in sorted(values.items()))
            out.append(f"<li>{e(kind)}: {e(listed)}</li>")
    out.append(
        f"<li>not billed to a member: internal {e(human_bytes(report.internal_bytes))}; "
        f"unattributed in {e(human_bytes(report.unattributed_in))}, out "
        f"{e(human_bytes(report.unattributed_out))}, unknown direction "
        f"{e(human_bytes(report.unattributed_none))}; crossed no declared uplink "
        f"{e(human_bytes(report.not_uplink_bytes))}</li>"
    )
    out.append("</ul>")
    if report.exporters:
        out.append(
            '<table id="exporters"><thead><tr><th class="text">exporter</th><th>datagrams</th>'
            "<th>flows</th><th>export units received</th><th>lost</th><th>duplicates</th>"
            "<th>reordered</th><th>complete</th></tr></thead><tbody>"
        )
        for x in report.exporters:
            share = "n/a" if x.completeness is None else f"{100 * x.completeness:.3f}%"
            out.append(
                f'<tr><td class="text"><code>{e(x.address)}</code></td>'
                f"<td>{x.datagrams:,}</td><td>{x.flows:,}</td><td>{x.sequence_received:,}</td>"
                f"<td>{x.sequence_lost:,}</td><td>{x.duplicates:,}</td>"
                f"<td>{x.reordered:,}</td><td>{e(share)}</td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append("<p class='muted'>No exporter counters for the month.</p>")
    return "\n".join(out)
