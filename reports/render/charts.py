"""Static charts of a month: matplotlib figures as inline SVG, and hand-drawn sparklines.

No pyplot and no interactive backend: figures are ``matplotlib.figure.Figure`` objects
saved with the SVG backend (text kept as text, ids salted per chart so that several charts
can share one HTML page, no date in the metadata so the output is reproducible). The same
drawing functions draw into the axes of a PDF page (reports/render/pdf.py), so a chart
prints the same in the HTML report, in a statement's HTML and in its PDF.

Member-provided strings (names) reach matplotlib with mathtext off (a name holding ``$``
is drawn as written); the SVG writer escapes them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from contextlib import contextmanager
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from reports.monthly import MonthlyReport
    from reports.series import MonthSeries

IN_COLOR = "#1f77b4"
OUT_COLOR = "#ff7f0e"
P95_COLOR = "#d62728"
COMMIT_COLOR = "#2ca02c"
OTHER_COLOR = "#b0b0b0"
UNATTRIBUTED_COLOR = "#7f7f7f"
STYLE = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.5,
    "pdf.fonttype": 42,
    "path.simplify": True,
}
UNITS = (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3), ("b/s", 1.0))

TEXTS = {
    "en": {
        "in": "in (download)",
        "out": "out (upload)",
        "in+out": "in + out",
        "p95_in": "{p}th in",
        "p95_out": "{p}th out",
        "billed": "billed {p}th",
        "commit": "commit {mbps} Mb/s",
        "billed_bin": "bin setting the billed {p}th",
        "rate": "rate ({unit})",
        "time": "local time ({tz})",
        "own_p95_in": "its {p}th in",
        "own_p95_out": "its {p}th out",
        "others": "other members ({n})",
        "unattributed": "unattributed",
        "clipped": "highest bin {rate}, above the scale",
    },
    "fr": {
        "in": "entrant (téléchargement)",
        "out": "sortant (envoi)",
        "in+out": "entrant + sortant",
        "p95_in": "{p}e centile entrant",
        "p95_out": "{p}e centile sortant",
        "billed": "{p}e centile facturé",
        "commit": "engagement {mbps} Mb/s",
        "billed_bin": "intervalle du {p}e centile facturé",
        "rate": "débit ({unit})",
        "time": "heure locale ({tz})",
        "own_p95_in": "votre {p}e centile entrant",
        "own_p95_out": "votre {p}e centile sortant",
        "others": "autres membres ({n})",
        "unattributed": "non attribué",
        "clipped": "intervalle le plus haut : {rate}, hors échelle",
    },
}


@contextmanager
def chart_style():
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width_in: float, height_in: float):
    """A Figure outside pyplot (no global state, no GUI backend)."""
    from matplotlib.figure import Figure

    with chart_style():
        return Figure(figsize=(width_in, height_in), layout="constrained")


def svg_of(fig, salt: str, title: str | None = None) -> str:
    """The figure as an ``<svg>`` element to put inline in HTML (no XML prolog)."""
    buffer = io.StringIO()
    with chart_style():
        import matplotlib

        with matplotlib.rc_context({"svg.hashsalt": salt, "svg.id": f"chart-{salt}"}):
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Title": title})
    text = buffer.getvalue()
    start = text.find("<svg")
    return text[start:].strip()


def unit_for(max_bps: float) -> tuple[str, float]:
    """The unit (and its scale in b/s) that reads best for rates up to ``max_bps``."""
    for unit, scale in UNITS:
        if max_bps >= scale:
            return unit, scale
    return "b/s", 1.0


def _times(series: MonthSeries, numbers: np.ndarray) -> np.ndarray:
    """numpy datetime64 (UTC) of the start of month bins ``numbers``."""
    start = np.datetime64(series.month.start_utc.replace(tzinfo=None), "s")
    return start + numbers.astype("timedelta64[s]") * series.bin_seconds


def _time_axis(ax: Axes, series: MonthSeries, texts: Mapping[str, str], short: bool) -> None:
    from zoneinfo import ZoneInfo

    import matplotlib.dates as mdates

    zone = ZoneInfo(series.month.timezone)
    if short:
        locator = mdates.AutoDateLocator(tz=zone, minticks=4, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %H:%M", tz=zone))
    else:
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=3, tz=zone))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d", tz=zone))
    ax.set_xlabel(texts["time"].format(tz=series.month.timezone))


def _month_limits(ax: Axes, series: MonthSeries) -> None:
    ends = _times(series, np.array([0, series.month.bin_count], dtype=np.int64))
    ax.set_xlim(ends[0], ends[1])


def _scale(
    ax: Axes, curves: list[np.ndarray], lines: list[float], texts: Mapping[str, str]
) -> tuple[str, float]:
    """Set the y axis of rate ``curves`` (b/s, NaN = no data) and horizontal ``lines``.

    A few very high bins would flatten everything else, the 95th lines included: the axis
    stops at the larger of 1.15 x the 99.5th percentile of the bins and 1.6 x the highest
    line, and the highest bin is then written in the corner. Returns (unit, scale)."""
    values = np.concatenate([c[np.isfinite(c)] for c in curves] or [np.zeros(0)])
    peak = float(values.max()) if values.size else 0.0
    lines_top = max([0.0, *lines])
    top = peak
    if values.size:
        limit = max(float(np.quantile(values, 0.995)) * 1.15, lines_top * 1.6)
        if peak > limit > 0:
            top = limit
    top = max(top, lines_top) * 1.05 or 1.0
    unit, scale = unit_for(top)
    ax.set_ylim(0, top / scale)
    if top < peak:
        peak_unit, peak_scale = unit_for(peak)
        ax.text(
            0.995,
            0.985,
            texts["clipped"].format(rate=f"{peak / peak_scale:.3g} {peak_unit}"),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="#555555",
        )
    return unit, scale


def _rate(series: MonthSeries, values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) * 8 / series.bin_seconds


def _rates_and_percentiles(
    ax: Axes,
    times: np.ndarray,
    rates: tuple[np.ndarray, np.ndarray],
    percentiles: tuple[float, float],
    labels: tuple[str, str],
    scale: float,
    texts: Mapping[str, str],
) -> None:
    """The in and out rates per bin, each with its percentile as a dashed line of its colour
    (the aggregate chart and a member's chart draw the same pair)."""
    for rate, name, color in zip(rates, ("in", "out"), (IN_COLOR, OUT_COLOR), strict=True):
        ax.plot(times, rate / scale, color=color, linewidth=0.6, label=texts[name])
    for level, label, color in zip(percentiles, labels, (IN_COLOR, OUT_COLOR), strict=True):
        ax.axhline(level / scale, color=color, linestyle="--", linewidth=1, label=label)


def draw_aggregate(
    ax: Axes, report: MonthlyReport, series: MonthSeries, lang: str = "en", salt: str = ""
) -> None:
    """The aggregate rate per bin, in and out, with its 95th lines, the commit line and the
    bin that sets the billed 95th."""
    texts = TEXTS[lang]
    p = report.percentile
    numbers = np.arange(series.month.bin_count, dtype=np.int64)
    times = _times(series, numbers)
    rate_in = _rate(series, series.dense(series.aggregate("in")))
    rate_out = _rate(series, series.dense(series.aggregate("out")))
    bill = report.bill
    p95_in = float(report.bps(bill.billed.p95_in))
    p95_out = float(report.bps(bill.billed.p95_out))
    commit = bill.contract.commit_mbps
    commit_bps = None if commit is None else float(commit) * 1e6
    lines = [p95_in, p95_out] + ([] if commit_bps is None else [commit_bps])
    unit, scale = _scale(ax, [rate_in, rate_out], lines, texts)
    _rates_and_percentiles(
        ax,
        times,
        (rate_in, rate_out),
        (p95_in, p95_out),
        (texts["p95_in"].format(p=p), texts["p95_out"].format(p=p)),
        scale,
        texts,
    )
    if commit_bps is not None:
        ax.axhline(
            commit_bps / scale,
            color=COMMIT_COLOR,
            linestyle="-.",
            linewidth=1.2,
            label=texts["commit"].format(mbps=_plain(commit)),
        )
    billed_bin = bill.billed_bins["billed"]
    if billed_bin is not None:
        ax.axvline(
            _times(series, np.array([billed_bin]))[0],
            color=P95_COLOR,
            linewidth=0.8,
            linestyle=":",
            label=texts["billed_bin"].format(p=p),
        )
    _month_limits(ax, series)
    ax.set_ylabel(texts["rate"].format(unit=unit))
    _time_axis(ax, series, texts, short=False)
    ax.legend(loc="upper left", fontsize=7, ncols=3, frameon=False)


def _plain(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def peak_window(report: MonthlyReport, half: int) -> np.ndarray:
    """Month bin numbers of the billed bin +- ``half`` bins (clipped to the month)."""
    billed_bin = report.bill.billed_bins["billed"]
    if billed_bin is None:
        return np.zeros(0, dtype=np.int64)
    low = max(0, billed_bin - half)
    high = min(report.month.bin_count, billed_bin + half + 1)
    return np.arange(low, high, dtype=np.int64)


def draw_peak(
    ax: Axes,
    report: MonthlyReport,
    series: MonthSeries,
    *,
    half: int = 12,
    top: int = 8,
    lang: str = "en",
) -> list[str]:
    """Members' contributions, stacked, in the bins around the billed one (billed
    direction); the ``top`` members at the billed bin by name, the rest as one band, and
    the unattributed traffic. Returns the ids of the members drawn by name."""
    texts = TEXTS[lang]
    p = report.percentile
    direction = report.bill.billed.direction
    numbers = peak_window(report, half)
    if len(numbers) == 0:
        ax.text(0.5, 0.5, "-", transform=ax.transAxes, ha="center")
        return []
    billed_bin = report.bill.billed_bins["billed"]
    members = series.dense(series.members(direction), fill=0.0)[:, numbers]
    other = series.dense(series.other(direction), fill=0.0)[numbers]
    at_peak = members[:, int(np.searchsorted(numbers, billed_bin))]
    order = [int(k) for k in np.argsort(-at_peak, kind="stable") if at_peak[k] > 0][:top]
    if not order:
        order = [int(k) for k in np.argsort(-members.sum(axis=1), kind="stable")[:top]]
    rest = np.ones(len(series.member_ids), dtype=bool)
    rest[order] = False
    rates = [_rate(series, members[k]) for k in order]
    labels = [_label(report, series.member_ids[k]) for k in order]
    colors = [_palette(i) for i in range(len(order))]
    if rest.any():
        rates.append(_rate(series, members[rest].sum(axis=0)))
        labels.append(texts["others"].format(n=int(rest.sum())))
        colors.append(OTHER_COLOR)
    rates.append(_rate(series, other))
    labels.append(texts["unattributed"])
    colors.append(UNATTRIBUTED_COLOR)
    billed_bps = float(report.bps(report.bill.billed.bytes))
    total = np.sum(rates, axis=0)
    unit, scale = unit_for(max(float(total.max()), billed_bps))
    x = np.arange(len(numbers))
    bottom = np.zeros(len(numbers))
    handles = []
    for values, label, color in zip(rates, labels, colors, strict=True):
        bars = ax.bar(x, values / scale, bottom=bottom, color=color, width=0.85, label=label)
        handles.append(bars)
        bottom += values / scale
    k = int(np.searchsorted(numbers, billed_bin))
    ax.bar([k], [bottom[k]], width=0.95, fill=False, edgecolor=P95_COLOR, linewidth=1.4, zorder=3)
    line = ax.axhline(
        billed_bps / scale,
        color=P95_COLOR,
        linestyle="--",
        linewidth=1,
        label=texts["billed"].format(p=p),
    )
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(series.month.timezone)
    ticks = list(range(0, len(numbers), max(1, len(numbers) // 6)))
    stamps = [report.bin_time(int(numbers[t])).astimezone(zone).strftime("%d %H:%M") for t in ticks]
    ax.set_xticks(ticks, stamps)
    ax.set_xlabel(texts["time"].format(tz=series.month.timezone))
    ax.set_ylabel(f"{texts[direction]}, " + texts["rate"].format(unit=unit))
    ax.legend(
        [*handles, line],
        [*labels, line.get_label()],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        frameon=False,
    )
    return [series.member_ids[k] for k in order]


def _label(report: MonthlyReport, member_id: str, width: int = 32) -> str:
    name = next((m.name for m in report.members if m.id == member_id), "")
    text = f"{member_id} {name}" if name and name != member_id else member_id
    return text if len(text) <= width else text[: width - 1] + "…"


def _palette(i: int) -> str:
    colors = (
        "#4e79a7",
        "#f28e2b",
        "#59a14f",
        "#e15759",
        "#76b7b2",
        "#edc948",
        "#b07aa1",
        "#ff9da7",
        "#9c755f",
        "#86bcb6",
    )
    return colors[i % len(colors)]


def draw_member(
    ax: Axes, report: MonthlyReport, series: MonthSeries, member_id: str, lang: str = "en"
) -> None:
    """One member's rate per bin over the month, in and out, with its own 95th lines and
    the bin that sets the aggregate's billed 95th."""
    texts = TEXTS[lang]
    p = report.percentile
    row = series.row(member_id)
    line = next(m for m in report.members if m.id == member_id)
    times = _times(series, np.arange(series.month.bin_count, dtype=np.int64))
    rate_in = _rate(series, series.dense(series.inbound[row]))
    rate_out = _rate(series, series.dense(series.outbound[row]))
    own_in = float(report.bps(line.p95_in_bytes))
    own_out = float(report.bps(line.p95_out_bytes))
    unit, scale = _scale(ax, [rate_in, rate_out], [own_in, own_out], texts)
    _rates_and_percentiles(
        ax,
        times,
        (rate_in, rate_out),
        (own_in, own_out),
        (texts["own_p95_in"].format(p=p), texts["own_p95_out"].format(p=p)),
        scale,
        texts,
    )
    billed_bin = report.bill.billed_bins["billed"]
    if billed_bin is not None:
        ax.axvline(
            _times(series, np.array([billed_bin]))[0],
            color=P95_COLOR,
            linewidth=0.8,
            linestyle=":",
            label=texts["billed_bin"].format(p=p),
        )
    _month_limits(ax, series)
    ax.set_ylabel(texts["rate"].format(unit=unit))
    _time_axis(ax, series, texts, short=False)
    ax.legend(loc="upper left", fontsize=7, ncols=2, frameon=False)


def aggregate_svg(report: MonthlyReport, series: MonthSeries, lang: str = "en") -> str:
    fig = new_figure(10, 3.6)
    with chart_style():
        draw_aggregate(fig.add_subplot(), report, series, lang)
    return svg_of(fig, "aggregate", "aggregate rate per bin")


def peak_svg(
    report: MonthlyReport, series: MonthSeries, *, half: int = 12, lang: str = "en"
) -> str:
    fig = new_figure(10, 3.8)
    with chart_style():
        draw_peak(fig.add_subplot(), report, series, half=half, lang=lang)
    return svg_of(fig, "peak", "members around the billed bin")


def member_svg(report: MonthlyReport, series: MonthSeries, member_id: str, lang: str) -> str:
    fig = new_figure(7.5, 2.8)
    with chart_style():
        draw_member(fig.add_subplot(), report, series, member_id, lang)
    salt = "member-" + re.sub(r"[^a-z0-9_-]", "_", member_id)
    return svg_of(fig, salt, "usage")


def sparkline(
    inbound: np.ndarray,
    outbound: np.ndarray,
    marker: int | None = None,
    *,
    width: int = 160,
    height: int = 28,
) -> str:
    """A tiny SVG of two dense month series (NaN = no data), each reduced to ``width``
    points by the maximum of its bins; ``marker`` (a bin number) is drawn as a red tick."""
    n = len(inbound)
    if n == 0:
        return ""
    points = min(width, n)
    edges = np.linspace(0, n, points + 1).astype(np.int64)

    def reduce(values: np.ndarray) -> np.ndarray:
        clean = np.nan_to_num(values, nan=0.0)
        return np.maximum.reduceat(clean, edges[:-1])

    a, b = reduce(inbound), reduce(outbound)
    peak = max(float(a.max()), float(b.max()), 1.0)
    xs = np.linspace(0.5, width - 0.5, points)

    def polyline(values: np.ndarray, color: str) -> str:
        ys = height - 1 - values / peak * (height - 3)
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        return f'<polyline fill="none" stroke="{color}" stroke-width="1" points="{coords}"/>'

    tick = ""
    if marker is not None:
        x = (marker + 0.5) / n * width
        tick = f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="{P95_COLOR}" stroke-width="1"/>'
    return (
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"{tick}{polyline(a, IN_COLOR)}{polyline(b, OUT_COLOR)}</svg>"
    )
