"""Per-member statements: PDF and HTML, French and English, amounts to the cent.

Each PDF is read back with poppler (Debian poppler-utils, installed by
scripts/install-system-deps.sh): pdftoppm must turn it into a PNG page and pdftotext must
find the member's name, its amounts and the month in it. The amounts before VAT of all
statements sum to the invoice + fee to the cent.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from report_scenario import MONTH, NASTY_ID, NASTY_NAME, config_variant, run, scenario

from reports.progress import Spinner
from reports.render.statement import (
    NBSP,
    NNBSP,
    format_bytes,
    format_eur,
    format_percent,
    vat_of,
)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is missing: install Debian's poppler-utils "
            "(sudo sh scripts/install-system-deps.sh)",
            pytrace=False,
        )
    return path


def pdf_text(path: Path) -> str:
    out = subprocess.run(
        [poppler("pdftotext"), str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    return out


def flat(text: str) -> str:
    """Every kind of space as one plain space (pdftotext writes U+202F/U+00A0 as spaces)."""
    return " ".join(text.replace(NNBSP, " ").replace(NBSP, " ").split())


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return scenario(tmp_path_factory)


@pytest.fixture(scope="module")
def report_json(base) -> dict:
    result = run("report", "-c", base.config, "-m", MONTH, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def french(base, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("statements-fr")
    result = run("statements", "-c", base.config, "-m", MONTH, "-o", directory, "-j", "2")
    assert result.exit_code == 0, result.output
    # Piped (not a terminal): no progress bar, no spinner, only the closing lines.
    assert "\r" not in result.output and "statements  [" not in result.output
    assert len(result.output.splitlines()) == 2
    return directory


def test_files_do_not_depend_on_the_number_of_processes(base, french, tmp_path):
    result = run("statements", "-c", base.config, "-m", MONTH, "-o", tmp_path, "-j", "1")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in french.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (french / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_french_formatting():
    assert format_eur(123456) == f"1{NNBSP}234,56{NBSP}€"
    assert format_eur(5) == f"0,05{NBSP}€"
    assert format_eur(100_000_000) == f"1{NNBSP}000{NNBSP}000,00{NBSP}€"
    assert format_eur(-123456) == f"-1{NNBSP}234,56{NBSP}€"
    assert format_eur(123456, "en") == "€1,234.56"
    assert format_bytes(1_234_567, "fr") == f"1,23{NBSP}Mo"
    assert format_bytes(1_234_567, "en") == f"1.23{NBSP}MB"
    assert format_percent(Fraction(1, 8), "fr") == f"12,5{NNBSP}%"
    assert format_percent(Fraction(1, 8), "en") == "12.5%"


def test_vat_is_rounded_half_up_per_statement():
    assert vat_of(1, Fraction(20)) == 0  # 0.2 cent
    assert vat_of(3, Fraction(50)) == 2  # 1.5 cents -> 2
    assert vat_of(12345, Fraction(20)) == 2469
    assert vat_of(12345, Fraction(0)) == 0
    assert vat_of(1000, Fraction("5.5")) == 55


def test_one_pdf_and_one_html_per_member(french, report_json):
    for m in report_json["members"]:
        for suffix in ("pdf", "html"):
            path = french / f"{MONTH}-{m['id']}.{suffix}"
            assert path.exists() and path.stat().st_size > 2_000, path
    listed = list(csv.DictReader(io.StringIO((french / f"{MONTH}-statements.csv").read_text())))
    assert [r["member_id"] for r in listed] == [m["id"] for m in report_json["members"]]


def test_pdfs_convert_to_png_and_hold_name_amount_and_month(french, report_json, tmp_path):
    pdftoppm = poppler("pdftoppm")
    ARTIFACTS.mkdir(exist_ok=True)
    total_ht = 0
    for m in report_json["members"]:
        pdf = french / f"{MONTH}-{m['id']}.pdf"
        prefix = tmp_path / m["id"]
        subprocess.run([pdftoppm, "-png", "-r", "40", str(pdf), str(prefix)], check=True)
        pages = sorted(tmp_path.glob(f"{m['id']}*.png"))
        assert len(pages) == 1 and pages[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        text = flat(pdf_text(pdf))
        assert flat(m["name"]) in text, m["id"]
        assert m["id"] in text
        assert "novembre 2026" in text
        ht = m["share_cents"]
        assert flat(format_eur(ht)) in text
        assert flat(format_eur(ht + vat_of(ht, Fraction(20)))) in text
        found = re.search(r"Total HT ([0-9 ]+,\d\d) €", text)
        assert found, text[:400]
        total_ht += int(found.group(1).replace(" ", "").replace(",", ""))
    subprocess.run(
        [
            pdftoppm,
            "-png",
            "-r",
            "70",
            "-singlefile",
            str(french / f"{MONTH}-{NASTY_ID}.pdf"),
            str(ARTIFACTS / f"statement-{MONTH}-{NASTY_ID}"),
        ],
        check=True,
    )
    invoice = report_json["invoice"]
    assert total_ht == invoice["used_cents"] + invoice["fee_cents"]


def test_summary_amounts_add_up_to_the_cent(french, report_json):
    rows = list(csv.DictReader(io.StringIO((french / f"{MONTH}-statements.csv").read_text())))
    invoice = report_json["invoice"]
    ht = [int(r["ht_cents"]) for r in rows]
    assert sum(ht) == invoice["used_cents"] + invoice["fee_cents"]
    for r in rows:
        assert int(r["ttc_cents"]) == int(r["ht_cents"]) + int(r["vat_cents"])
        assert int(r["vat_cents"]) == vat_of(int(r["ht_cents"]), Fraction(20))
    # VAT per statement: the TTC total is within half a cent per statement of the exact one.
    exact = Fraction(sum(ht)) * Fraction(6, 5)
    assert abs(sum(int(r["ttc_cents"]) for r in rows) - exact) <= Fraction(len(rows), 2)


def test_a_name_with_markup_is_shown_literally(french):
    text = flat(pdf_text(french / f"{MONTH}-{NASTY_ID}.pdf"))
    assert flat(NASTY_NAME) in text  # drawn as written: no markup, no mathtext
    page = (french / f"{MONTH}-{NASTY_ID}.html").read_text(encoding="utf-8")
    assert html.escape(NASTY_NAME) in page
    assert NASTY_NAME not in page and "<script" not in page


def test_statement_explains_the_rule_in_two_sentences(french, report_json):
    m = report_json["members"][0]
    page = (french / f"{MONTH}-{m['id']}.html").read_text(encoding="utf-8")
    rule = html.unescape(re.search(r'<p id="rule">(.*?)</p>', page, re.S).group(1))
    sentences = [s for s in re.split(r"(?<=\.)\s+", rule.strip()) if s]
    assert len(sentences) == 2, sentences
    assert "prorata du volume" in sentences[0]
    assert format_eur(m["usage_cents"]) in sentences[1]


def test_english_statements(base, report_json, tmp_path):
    member = report_json["members"][2]
    result = run(
        "statements",
        "-c",
        base.config,
        "-m",
        MONTH,
        "-o",
        tmp_path,
        "--lang",
        "en",
        "--vat",
        "5.5",
        "--member",
        member["id"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{MONTH}-{member['id']}.html",
        f"{MONTH}-{member['id']}.pdf",
        f"{MONTH}-statements.csv",
    ]
    text = flat(pdf_text(tmp_path / f"{MONTH}-{member['id']}.pdf"))
    assert "November 2026" in text and "Amount due" in text
    ht = member["share_cents"]
    assert format_eur(ht, "en") in text
    assert format_eur(ht + vat_of(ht, Fraction("5.5")), "en") in text
    assert "VAT 5.5%" in text


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("p95-own", "own 95th percentile"),
        ("p95-bin", "interval that sets"),
        ("shapley", "Shapley value"),
    ],
)
def test_every_rule_has_its_sentences(base, tmp_path, rule, words):
    config = config_variant(
        base, tmp_path, "[contract]", f'[sharing]\nrule = "{rule}"\n\n[contract]'
    )
    from accounting.config import load_config
    from accounting.store import Store
    from reports.render.statement import build_statements
    from reports.series import load_month

    with Store.open(base.database, read_only=True) as store:
        report, series = load_month(load_config(config), store, MONTH)
    for lang in ("en", "fr"):
        statements = build_statements(report, series, lang=lang)
        for s, line in zip(statements, report.members, strict=True):
            first, second = s.rule_sentences
            assert first.endswith(".") and second.endswith(".")
            assert format_eur(line.bill.usage_cents, lang) in second
            if lang == "en":
                assert words in first


def test_bad_options(base, tmp_path):
    result = run("statements", "-c", base.config, "-m", MONTH, "-o", tmp_path, "--vat", "abc")
    assert result.exit_code == 2 and "--vat" in result.output
    result = run("statements", "-c", base.config, "-m", MONTH, "-o", tmp_path, "--member", "zz")
    assert result.exit_code == 2 and "zz" in result.output


def test_spinner_only_on_a_terminal():
    quiet = io.StringIO()
    with Spinner("working", stream=quiet) as spinner:  # a StringIO is not a terminal
        spinner.set("still working")
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    with Spinner("working", stream=shown, enabled=True, interval=0.01) as spinner:
        import time

        time.sleep(0.05)
    text = shown.getvalue()
    assert "working" in text and " 0 s\r" in text and text.endswith("\r")
