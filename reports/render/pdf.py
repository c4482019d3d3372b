"""A statement as a one-page A4 PDF, drawn with matplotlib's PDF backend.

matplotlib is already what draws the charts, so the PDF needs no other library: the page
is a Figure of A4 size, its text placed from the top down, the usage chart drawn as vector
graphics in an axes of the same page (the same drawing function as the HTML's SVG). The
font is the DejaVu Sans that matplotlib ships, embedded as TrueType (Type 42), so that
every character of a member's name (accents, ``<``, ``&``, ``$``...) is drawn as written
and can be extracted as text; mathtext is off. No date in the metadata: the same
statement gives the same bytes.
"""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING

from reports.render.charts import chart_style, draw_member
from reports.render.statement import (
    LABELS,
    Statement,
    amount_rows,
    heading,
    period_text,
    usage_rows,
)

if TYPE_CHECKING:
    from reports.monthly import MonthlyReport
    from reports.series import MonthSeries

A4 = (8.27, 11.69)  # inches
MARGIN = 0.7
POINT = 1 / 72  # inch


class _Page:
    """Text placed from the top of a Figure, line by line (positions in inches)."""

    def __init__(self, fig) -> None:
        self.fig = fig
        self.width, self.height = A4
        self.y = MARGIN  # from the top

    def _at(self, x: float, y: float) -> tuple[float, float]:
        return x / self.width, 1 - y / self.height

    def text(self, text: str, size: float = 9.5, *, bold=False, color="#222222", gap=0.35):
        self.y += size * POINT * 1.25
        self.fig.text(
            *self._at(MARGIN, self.y),
            text,
            fontsize=size,
            fontweight="bold" if bold else "normal",
            color=color,
            va="baseline",
        )
        self.y += size * POINT * gap

    def paragraph(self, text: str, size: float = 9.5, *, color="#222222", chars: int = 0):
        width = chars or int(96 * 9.5 / size)
        for line in textwrap.wrap(text, width, break_long_words=True) or [""]:
            self.text(line, size, color=color, gap=0.2)
        self.y += size * POINT * 0.3

    def section(self, title: str) -> None:
        self.y += 0.12
        self.text(title, 11, bold=True, gap=0.25)
        y = 1 - (self.y) / self.height
        self.fig.add_artist(
            _line(MARGIN / self.width, 1 - MARGIN / self.width, y, self.fig.transFigure)
        )
        self.y += 0.06

    def row(self, label: str, value: str, *, bold=False, size: float = 9.5) -> None:
        self.y += size * POINT * 1.35
        weight = "bold" if bold else "normal"
        x_label, y = self._at(MARGIN, self.y)
        x_value, _ = self._at(self.width - MARGIN, self.y)
        self.fig.text(x_label, y, label, fontsize=size, fontweight=weight, va="baseline")
        self.fig.text(
            x_value, y, value, fontsize=size, fontweight=weight, ha="right", va="baseline"
        )
        self.y += size * POINT * 0.2


def _line(x0: float, x1: float, y: float, transform):
    from matplotlib.lines import Line2D

    return Line2D([x0, x1], [y, y], transform=transform, color="#bbbbbb", linewidth=0.6)


def statement_pdf(s: Statement, report: MonthlyReport, series: MonthSeries) -> bytes:
    """The statement as PDF bytes."""
    from matplotlib.figure import Figure

    t = LABELS[s.lang]
    with chart_style():
        fig = Figure(figsize=A4)
        page = _Page(fig)
        page.paragraph(heading(s), 14, chars=70)
        for line in textwrap.wrap(s.name, 60, break_long_words=True) or [""]:
            page.text(line, 13, bold=True, gap=0.2)
        colon = "\u202f:" if s.lang == "fr" else ":"
        page.text(f"{t['id']}{colon} {s.member_id}", 9.5, gap=0.2)
        page.text(f"{t['period']}{colon} {period_text(s)}", 9.5)
        if not s.in_configuration:
            page.paragraph(t["not_configured"], 9, color="#aa0000")

        page.section(t["amounts"])
        for label, value, strong in amount_rows(s):
            page.row(label, value, bold=strong)
        page.y += 0.05
        page.paragraph(t["vat_note"], 7.5, color="#555555")

        page.section(t["rule"])
        page.paragraph(f"{s.rule_sentences[0]} {s.rule_sentences[1]}", 9.5)

        page.section(t["usage"])
        for label, value in usage_rows(s):
            if len(value) > 60:
                page.row(label, "")
                page.paragraph(value, 9, chars=100)
            else:
                page.row(label, value)

        page.section(t["chart"])
        axes_top = page.y + 0.12
        axes_height = 2.1
        ax = fig.add_axes(
            (
                (MARGIN + 0.45) / A4[0],
                1 - (axes_top + axes_height) / A4[1],
                (A4[0] - 2 * MARGIN - 0.55) / A4[0],
                axes_height / A4[1],
            )
        )
        draw_member(ax, report, series, s.member_id, s.lang)
        page.y = axes_top + axes_height + 0.5

        page.section(t["completeness"])
        page.paragraph(" ".join(s.completeness), 9)
        page.paragraph(f"{t['reproducibility']}: {s.reproducibility}", 6.5, color="#555555")

        buffer = io.BytesIO()
        fig.savefig(
            buffer,
            format="pdf",
            metadata={
                "Title": f"{heading(s)} — {s.name}",
                "Subject": s.member_id,
                "Creator": "egress",
                "Producer": None,
                "CreationDate": None,
            },
        )
    return buffer.getvalue()
