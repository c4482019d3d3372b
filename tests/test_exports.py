"""Exports for spreadsheets and BI tools, and golden files of the CSV and JSON reports.

Golden files live in tests/golden/. When a change to the report is intended, regenerate
them with

    EGRESS_UPDATE_GOLDEN=1 python -m pytest tests/test_exports.py -k golden

and review the diff in git. The JSON's reproducibility line carries the software version:
it is replaced by ``egress <version>`` on both sides before comparing.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
from pathlib import Path

import polars as pl
import pytest
from report_scenario import MONTH, NASTY_ID, NASTY_NAME, run, scenario

from reports.render.csv import COLUMNS

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("EGRESS_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return scenario(tmp_path_factory)


def report_output(base, fmt: str, *extra: str) -> str:
    result = run("report", "-c", base.config, "-m", MONTH, "-f", fmt, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def normalise(text: str) -> str:
    """What may change without the report changing: the software version."""
    return re.sub(r"egress \d+\.\d+[^;\"]*", "egress <version>", text)


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    actual = normalise(actual)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run EGRESS_UPDATE_GOLDEN=1 pytest {__file__} -k golden")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(),
            actual.splitlines(),
            f"golden/{name}",
            "this run",
            lineterm="",
            n=2,
        )
        lines = list(diff)
        shown = "\n".join(lines[:120]) + ("\n..." if len(lines) > 120 else "")
        pytest.fail(
            f"{name} differs from the golden file. If the change is intended, regenerate with "
            f"EGRESS_UPDATE_GOLDEN=1 and review the diff:\n{shown}",
            pytrace=False,
        )


def test_golden_csv(base):
    check_golden(f"report-{MONTH}.csv", report_output(base, "csv"))


def test_golden_json(base):
    check_golden(f"report-{MONTH}.json", report_output(base, "json"))


def test_golden_files_are_self_consistent():
    """The committed JSON adds up (so a regenerated file cannot hide a broken sum)."""
    data = json.loads((GOLDEN / f"report-{MONTH}.json").read_text(encoding="utf-8"))
    invoice = data["invoice"]
    assert sum(m["share_cents"] for m in data["members"]) == invoice["total_cents"]
    assert invoice["total_cents"] == invoice["used_cents"] + invoice["fee_cents"]
    rows = list(csv.DictReader(io.StringIO((GOLDEN / f"report-{MONTH}.csv").read_text())))
    assert [r["member_id"] for r in rows] == [m["id"] for m in data["members"]]
    assert [int(r["share_cents"]) for r in rows] == [m["share_cents"] for m in data["members"]]
    assert next(r["name"] for r in rows if r["member_id"] == NASTY_ID) == NASTY_NAME


def test_normalise_hides_only_the_version():
    line = "rule volume; egress 0.1.0; usage blake2b 00ff"
    assert normalise(line) == "rule volume; egress <version>; usage blake2b 00ff"
    assert normalise('"reproducibility": "rule x; egress 1.2.3.dev4+g1"') == (
        '"reproducibility": "rule x; egress <version>"'
    )


def test_parquet_member_table_matches_the_csv(base, tmp_path):
    target = tmp_path / "members.parquet"
    assert report_output(base, "parquet", "-o", target) == ""
    frame = pl.read_parquet(target)
    rows = list(csv.DictReader(io.StringIO(report_output(base, "csv"))))
    assert frame.columns == list(rows[0])
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert frame.height == len(rows)
    assert frame.schema["bytes_in"] == pl.Int64 and frame.schema["share_cents"] == pl.Int64
    assert frame.schema["p95_in_bps"] == pl.Float64
    for record, row in zip(frame.iter_rows(named=True), rows, strict=True):
        for column, text in row.items():
            value = record[column]
            if isinstance(value, float):
                assert f"{value:.3f}" == text, column
            else:
                assert ("" if value is None else str(value)) == text, column


def test_parquet_needs_an_output_file(base):
    result = run("report", "-c", base.config, "-m", MONTH, "-f", "parquet")
    assert result.exit_code == 2
    assert "give -o FILE" in result.output


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_usage_export(base, tmp_path, fmt):
    target = tmp_path / f"usage.{fmt}"
    result = run("export", "usage", "-c", base.config, "-m", MONTH, "-f", fmt, "-o", target)
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(target) if fmt == "parquet" else pl.read_csv(target)
    assert frame.columns == [
        "bin_start",
        "bin_start_local",
        "bucket",
        "member_id",
        "direction",
        "bytes",
        "packets",
        "flows",
    ]
    assert f"{frame.height:,} usage rows" in result.output
    assert set(frame["bucket"].unique()) <= {"member", "internal", "unattributed", "not_uplink"}
    assert set(frame["direction"].unique()) <= {"in", "out", "none"}
    # November in Paris is UTC+01:00; every local start is the UTC start plus one hour.
    assert frame["bin_start_local"].str.ends_with("+01:00").all()
    first_utc = str(frame["bin_start"][0])
    first_local = frame["bin_start_local"][0]
    assert first_utc[:10] == first_local[:10] or first_local[11:13] == "00"
    # Volumes per member and direction are the report's.
    report = json.loads(report_output(base, "json"))
    sums = (
        frame.filter(pl.col("bucket") == "member")
        .group_by("member_id", "direction")
        .agg(pl.col("bytes").sum())
    )
    got = {(r["member_id"], r["direction"]): r["bytes"] for r in sums.iter_rows(named=True)}
    for m in report["members"]:
        assert got.get((m["id"], "in"), 0) == m["bytes_in"]
        assert got.get((m["id"], "out"), 0) == m["bytes_out"]
    internal = frame.filter(pl.col("bucket") == "internal")["bytes"].sum()
    assert internal == report["internal"]["bytes"]


def test_usage_export_of_an_empty_month(base, tmp_path):
    result = run(
        "export", "usage", "-c", base.config, "-m", "2026-05", "-o", tmp_path / "u.parquet"
    )
    assert result.exit_code == 1
    assert "no data for 2026-05" in result.output
