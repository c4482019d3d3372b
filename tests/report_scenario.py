"""The fixed dataset of the report-output tests (HTML, statements, exports, month to date).

A small deterministic NetFlow v5 scenario (6 members, seed 7), ingested once per test
session through the real CLI. One member's name holds HTML, script and mathtext
characters, so that every rendering has to show it literally. The contract has a commit,
an overage price and a management fee, so that the commit line, the fee and the sums of
invoice + fee are all exercised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from collector.synth.model import TrafficSpec
from collector.synth.scenario import v5_scenario
from reports.cli import main

NASTY_NAME = "<script>alert('x')</script> & Fils \"Ç\" $a$ <b>"
NASTY_ID = "m0001"
MONTH = "2026-11"
CONTRACT = """[contract]
monthly_eur = 10000.00
commit_mbps = 0.01
overage_eur_per_mbps = 2000.00
fee_percent = 5
"""

_built: dict[str, Scenario] = {}


@dataclass(frozen=True)
class Scenario:
    directory: Path
    config: Path
    database: Path


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scenario(tmp_path_factory) -> Scenario:
    """Built on first use, then shared by every test module of the session."""
    if "base" not in _built:
        directory = tmp_path_factory.mktemp("report-outputs")
        made = v5_scenario(
            directory, members=6, spec=TrafficSpec(seed=7, flows=4_000, max_octets_share=0.0)
        )
        text = made.config.read_text(encoding="utf-8")
        text = text.replace('name = "Membre 1"', f"name = {toml_string(NASTY_NAME)}", 1)
        text = re.sub(r"\[contract\]\nmonthly_eur = [0-9.]+\n", CONTRACT, text, count=1)
        made.config.write_text(text, encoding="utf-8")
        result = run("ingest", "-q", "-c", made.config, made.capture)
        assert result.exit_code == 0, result.output
        _built["base"] = Scenario(directory, made.config, directory / "egress.duckdb")
    return _built["base"]


def config_variant(base: Scenario, directory: Path, old: str, new: str) -> Path:
    """A copy of the configuration with one change, on the same database."""
    text = base.config.read_text(encoding="utf-8")
    changed = text.replace(old, new, 1)
    assert changed != text, f"{old!r} not found in the configuration"
    changed = changed.replace(
        'database = "egress.duckdb"', f"database = {toml_string(str(base.database))}"
    )
    path = directory / "egress.toml"
    path.write_text(changed, encoding="utf-8")
    return path
