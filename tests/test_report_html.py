"""The HTML report: self-contained, escaped, and checked in a real headless browser.

The browser is Debian's chromium driven through chromium-driver by selenium (the test
extra). scripts/install-system-deps.sh installs both; without them the browser test fails
and names the packages. Name resolution is switched off in the browser, so even a bug that
linked an outside resource could not reach the network; the test still sees the attempt
in the performance log and fails on it.

Artifacts (gitignored): tests/artifacts/report-2026-11.png (a full-page screenshot) and
report-2026-11-print.pdf (the page printed by the browser).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_scenario import MONTH, NASTY_ID, NASTY_NAME, run, scenario

from reports.render.table import euros

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
INSTALL_HINT = (
    "run 'sudo sh scripts/install-system-deps.sh' (Debian: apt-get install chromium "
    "chromium-driver poppler-utils)"
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return scenario(tmp_path_factory)


@pytest.fixture(scope="module")
def page(base, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("html") / f"report-{MONTH}.html"
    result = run("report", "-c", base.config, "-m", MONTH, "-f", "html", "-o", target)
    assert result.exit_code == 0, result.output
    assert result.output == ""
    return target


@pytest.fixture(scope="module")
def report_json(base) -> dict:
    result = run("report", "-c", base.config, "-m", MONTH, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script", text, re.IGNORECASE), "the report holds a script"
    assert not re.search(r"<(link|iframe|object|embed|img)\b", text, re.IGNORECASE)
    for attribute in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', text):
        assert attribute.startswith(("#", "data:")), attribute
    for reference in re.findall(r"url\(([^)]*)\)", text):
        assert reference.startswith("#"), reference
    assert "@import" not in text and "@font-face" not in text


def test_member_strings_are_escaped(page):
    text = page.read_text(encoding="utf-8")
    assert html.escape(NASTY_NAME) in text
    assert NASTY_NAME not in text
    assert "<b>" not in text  # the name's own tag, never as markup


def test_page_holds_every_section(page, report_json):
    text = page.read_text(encoding="utf-8")
    for anchor in (
        'id="key-figures"',
        'id="summary"',
        'id="aggregate-chart"',
        'id="peak-chart"',
        'id="allocation"',
        'id="completeness"',
        'id="exporters"',
        'id="reproducibility"',
    ):
        assert anchor in text, anchor
    assert "commit 0.01 Mb/s" in text  # the commit line's legend and the contract
    assert normal(report_json["reproducibility"]) in normal(html.unescape(text))
    for rule in report_json["method"]["compared_rules"]:
        assert f'data-rule="{rule}"' in text
    assert text.count('class="spark"') == len(report_json["members"])


def normal(text: str) -> str:
    return " ".join(text.split())


def test_html_to_stdout(base):
    result = run("report", "-c", base.config, "-m", MONTH, "-f", "html")
    assert result.exit_code == 0
    assert result.output.startswith("<!DOCTYPE html>") and result.output.rstrip().endswith(
        "</html>"
    )


# ---- in a real browser


def _browser():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [
        package
        for package, path in (("chromium", chromium), ("chromium-driver", driver))
        if not os.access(path, os.X_OK)
    ]
    if missing:
        pytest.fail(
            f"the HTML report's browser test needs Debian's {' and '.join(missing)}: "
            + INSTALL_HINT,
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser test needs selenium: pip install -e '.[test]'", pytrace=False)
    return chromium, driver, webdriver, Service


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path, webdriver, Service = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=driver_path)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except Exception as exc:  # a driver that does not start is a broken install
        pytest.fail(f"chromium did not start under chromium-driver ({exc}); " + INSTALL_HINT)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, path: Path) -> str:
    browser.get("about:blank")
    browser.get_log("performance")  # drop what the browser did before this page
    browser.get_log("browser")
    url = path.resolve().as_uri()
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    return url


LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:", "chrome:", "devtools:")


def page_activity(browser, url: str) -> tuple[list, list[str], list[str]]:
    """(console errors and warnings, requests of the page other than itself, requests
    anywhere in the browser to a non-local scheme) since the page was opened."""
    console = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    everything, from_page = [], []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            everything.append(params["request"]["url"])
            if params.get("documentURL") == url:
                from_page.append(params["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            everything.append(params["url"])
    assert url in from_page, "the performance log did not see the page itself"
    others = [r for r in from_page if r != url and not r.startswith("data:")]
    leaving = [r for r in everything if not r.startswith(LOCAL_SCHEMES)]
    return console, others, leaving


@pytest.fixture(scope="module")
def loaded(browser, page):
    url = open_page(browser, page)
    return browser, url, page_activity(browser, url)


def test_renders_without_console_errors_or_network(loaded):
    browser, _, (console, others, leaving) = loaded
    assert console == []
    assert others == [], f"the page asked for {others}"
    assert leaving == [], f"requests leaving the machine: {leaving}"
    assert browser.execute_script("return document.scripts.length") == 0


def test_totals_in_the_browser_equal_the_json_report(loaded, report_json):
    browser, *_ = loaded
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#totals td[data-total]'))"
        ".map(td => [td.dataset.total, td.dataset.value, td.innerText])"
    )
    totals = {name: (int(value), text) for name, value, text in cells}
    members = report_json["members"]
    invoice = report_json["invoice"]
    assert totals["bytes_in"][0] == sum(m["bytes_in"] for m in members)
    assert totals["bytes_out"][0] == sum(m["bytes_out"] for m in members)
    assert totals["share"][0] == report_json["totals"]["share_cents"] == invoice["total_cents"]
    assert totals["share"][1] == euros(invoice["total_cents"])
    assert totals["fee"][0] == invoice["fee_cents"]
    for rule in report_json["method"]["compared_rules"]:
        assert totals[f"rule:{rule}"][0] == invoice["used_cents"], rule
        assert totals[f"rule:{rule}"][0] == sum(m["alternatives_cents"][rule] for m in members)
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#allocation tbody tr'))"
        ".map(tr => [tr.dataset.member, tr.querySelector('td.name').innerText,"
        " tr.querySelector('td.pays').dataset.value])"
    )
    assert [(r[0], r[1], int(r[2])) for r in rows] == [
        (m["id"], m["name"], m["share_cents"]) for m in members
    ]
    shown = dict((r[0], r[1]) for r in rows)
    assert shown[NASTY_ID] == NASTY_NAME  # literally, as text


def test_charts_are_drawn(loaded, report_json):
    browser, *_ = loaded
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure svg'))"
        ".map(s => [s.getBoundingClientRect().width, s.getBoundingClientRect().height])"
    )
    assert len(sizes) == 2 and all(w > 300 and h > 100 for w, h in sizes), sizes
    sparks = browser.execute_script("return document.querySelectorAll('svg.spark').length")
    assert sparks == len(report_json["members"])
    legend = browser.execute_script("return document.querySelector('#peak-chart svg').textContent")
    assert "billed 95th" in legend


def test_screenshot_and_print(loaded):
    browser, *_ = loaded
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 12000))
    shot = ARTIFACTS / f"report-{MONTH}.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    from selenium.webdriver.common.print_page_options import PrintOptions

    printed = ARTIFACTS / f"report-{MONTH}-print.pdf"
    printed.write_bytes(base64.b64decode(browser.print_page(PrintOptions())))
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.fail("pdftotext is missing (Debian poppler-utils): " + INSTALL_HINT)
    text = subprocess.run(
        [pdftotext, str(printed), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert f"egress report {MONTH}" in text
    # The name may wrap inside its table cell: compare without the white space.
    assert "".join(NASTY_NAME.split()) in "".join(text.split())


def test_the_browser_checks_see_errors_and_requests(browser, tmp_path):
    """The checks above are live: a page with a console error and an outside image fails."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="https://example.invalid/x.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    console, others, leaving = page_activity(browser, open_page(browser, bad))
    assert any("boom" in e["message"] for e in console)
    assert others == ["https://example.invalid/x.png"]
    assert leaving == ["https://example.invalid/x.png"]
