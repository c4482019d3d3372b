"""Month to date: `egress report --month current`, labelled as a projection everywhere.

The scenario's traffic runs from 2026-11-05 00:00 to 06:00 (Paris); reporting "as of"
03:00 must ignore what comes after, and the projected billed 95th must be the nearest-rank
95th over the elapsed bins, recomputed here from the exported usage rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from report_scenario import MONTH, config_variant, run, scenario

from reports.projection import parse_as_of

AS_OF = "2026-11-05T03:00:00"  # local (Europe/Paris): 02:00 UTC
CUTOFF_UTC = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
MONTH_START_UTC = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return scenario(tmp_path_factory)


@pytest.fixture(scope="module")
def usage(base, tmp_path_factory) -> pl.DataFrame:
    target = tmp_path_factory.mktemp("mtd") / "usage.parquet"
    result = run("export", "usage", "-c", base.config, "-m", MONTH, "-o", target)
    assert result.exit_code == 0, result.output
    return pl.read_parquet(target)


def current(config, fmt: str = "json", *extra: str):
    result = run("report", "-c", config, "-m", "current", "--as-of", AS_OF, "-f", fmt, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def nearest_rank(values: np.ndarray, p: int) -> int:
    ordered = np.sort(values)
    return int(ordered[math.ceil(p * len(ordered) / 100) - 1])


def test_projection_uses_only_the_elapsed_bins(base, usage):
    data = json.loads(current(base.config))
    projection = data["projection"]
    elapsed = int((CUTOFF_UTC - MONTH_START_UTC).total_seconds()) // 300
    assert projection["elapsed_bins"] == elapsed
    assert projection["bins_in_month"] == data["bins"]["in_month"] == 8640
    assert projection["data_until_utc"] == "2026-11-05T02:00:00+00:00"
    assert "95th percentile over the bins elapsed so far" in projection["method"]
    so_far = usage.filter(pl.col("bin_start") < CUTOFF_UTC)
    later = usage.filter(pl.col("bin_start") >= CUTOFF_UTC)
    assert so_far.height and later.height  # the cut falls inside the data
    members = so_far.filter(pl.col("bucket") == "member")
    for m in data["members"]:
        mine = members.filter(pl.col("member_id") == m["id"])
        assert m["bytes_in"] == mine.filter(pl.col("direction") == "in")["bytes"].sum()
        assert m["bytes_out"] == mine.filter(pl.col("direction") == "out")["bytes"].sum()
    # The projected billed 95th, recomputed from the rows: members + unattributed of
    # known direction, per bin with data, nearest rank.
    billed = so_far.filter(
        pl.col("bucket").is_in(["member", "unattributed"])
        & pl.col("direction").is_in(["in", "out"])
    )
    per_bin = billed.group_by("bin_start", "direction").agg(pl.col("bytes").sum())
    p95 = {
        d: nearest_rank(per_bin.filter(pl.col("direction") == d)["bytes"].to_numpy(), 95)
        for d in ("in", "out")
    }
    expected_bps = max(p95.values()) * 8 / 300
    assert projection["projected_billed_bps"] == pytest.approx(expected_bps, rel=1e-12)
    invoice = data["invoice"]
    assert projection["projected_invoice_cents"] == invoice["used_cents"]
    assert sum(m["share_cents"] for m in data["members"]) == invoice["total_cents"]


def test_projection_differs_from_the_whole_month(base):
    mtd = json.loads(current(base.config))
    whole = run("report", "-c", base.config, "-m", MONTH, "-f", "json")
    month = json.loads(whole.output)
    assert "projection" not in month
    assert mtd["totals"]["member_bytes"] < month["totals"]["member_bytes"]


def test_every_format_says_projection(base, tmp_path):
    table = current(base.config, "table")
    lines = table.splitlines()
    assert lines[0].startswith("PROJECTION, month to date: 2026-11 as of 2026-11-05T03:00:00+01:00")
    assert lines[-1].startswith("PROJECTION")
    assert "method: projected billed 95th" in table
    rows = list(csv.DictReader(io.StringIO(current(base.config, "csv"))))
    assert {r["projected_as_of"] for r in rows} == {"2026-11-05T02:00:00+00:00"}
    page = tmp_path / "mtd.html"
    current(base.config, "html", "-o", str(page))
    text = page.read_text(encoding="utf-8")
    assert 'id="projection"' in text and "(projection)</title>" in text
    target = tmp_path / "mtd.parquet"
    current(base.config, "parquet", "-o", str(target))
    frame = pl.read_parquet(target)
    assert frame["projected_as_of"].unique().to_list() == ["2026-11-05T02:00:00+00:00"]


def test_missing_zero_counts_only_elapsed_bins(base, tmp_path):
    config = config_variant(
        base, tmp_path, 'direction = "max"', 'direction = "max"\nmissing = "zero"'
    )
    data = json.loads(current(config))
    elapsed = data["projection"]["elapsed_bins"]
    assert data["bins"]["used"] == elapsed  # not the 8,640 bins of the whole month
    assert data["invoice"]["total_cents"] == sum(m["share_cents"] for m in data["members"])
    assert "members with stored usage" not in " ".join(data["notes"])


def test_as_of_needs_current_and_a_complete_bin(base):
    result = run("report", "-c", base.config, "-m", MONTH, "--as-of", AS_OF)
    assert result.exit_code == 2 and "--as-of goes with --month current" in result.output
    result = run("report", "-c", base.config, "-m", "current", "--as-of", "2026-11-01T00:02")
    assert result.exit_code == 1 and "no complete 300 s bin yet" in result.output
    result = run("report", "-c", base.config, "-m", "current", "--as-of", "yesterday")
    assert result.exit_code == 1 and "--as-of" in result.output


def test_parse_as_of():
    assert parse_as_of("2026-11-05T03:00", "Europe/Paris") == CUTOFF_UTC.replace(hour=2)
    assert parse_as_of("2026-11-05T02:00+00:00", "Europe/Paris") == CUTOFF_UTC
    now = parse_as_of(None, "Europe/Paris")
    assert now.tzinfo is not None and abs((datetime.now(UTC) - now).total_seconds()) < 60
