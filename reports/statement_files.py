"""Writing the statements' files: one HTML and one PDF per member, in parallel if asked.

A statement takes about half a second (its chart drawn twice, the PDF's font subset), so
a 1,000-member month takes minutes on one core. ``jobs > 1`` forks worker processes that
inherit the report and the series (copy on write, nothing is pickled but the statement's
index) and write their files themselves. The output does not depend on ``jobs``: a
statement's bytes are the same whichever process draws it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reports.render.statement import Statement

_WORK: dict[str, Any] = {}


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def write_one(report, series, s: Statement, directory: Path) -> None:
    from reports.render.charts import member_svg
    from reports.render.pdf import statement_pdf
    from reports.render.statement import render_statement_html

    chart = member_svg(report, series, s.member_id, s.lang)
    (directory / f"{s.file_stem}.html").write_text(
        render_statement_html(s, chart), encoding="utf-8"
    )
    (directory / f"{s.file_stem}.pdf").write_bytes(statement_pdf(s, report, series))


def _work(k: int) -> int:
    report, series, statements, directory = _WORK["args"]
    write_one(report, series, statements[k], directory)
    return k


def write_statements(
    report,
    series,
    statements: Sequence[Statement],
    directory: Path,
    *,
    jobs: int = 1,
    advance: Callable[[int], None] | None = None,
) -> None:
    """Write every statement's HTML and PDF into ``directory``; ``advance(1)`` after each."""
    directory.mkdir(parents=True, exist_ok=True)
    step = advance or (lambda n: None)
    if (
        jobs <= 1
        or len(statements) < 2 * jobs
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        for s in statements:
            write_one(report, series, s, directory)
            step(1)
        return
    _WORK["args"] = (report, series, list(statements), directory)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for _ in pool.imap_unordered(_work, range(len(statements))):
                step(1)
    finally:
        _WORK.clear()
