"""report.html in a real browser: headless Chromium (Debian's, driven by Playwright) opens the file as a
person would from disk or a mail attachment. Nothing may leave file://, the charts must be named images, the
page must fit a laptop screen and print. Screenshots go to test-output/ (not committed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.report.metrics import build_report
from gatekeeper.report.render import render_html
from tests.conftest import ROOT
from tests.support.report_history import WINDOW, rich_history

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = ROOT / "test-output"
HOSTILE = '<script>alert("x")</script> $\\frac{a}{b}$'  # a rule name in the history


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium; skipped only where it is missing, and under CI=true a skip is a failure."""
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make bootstrap installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


def test_report_opens_from_disk_loads_nothing_and_reads_well(browser, tmp_path):
    report = build_report(rich_history().as_entries(), WINDOW, tenant="contoso", generated_at=WINDOW.until)
    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1366, "height": 768})  # a laptop
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("networkidle")

    assert requests == [path.as_uri()]  # the page itself, and nothing else
    assert problems == []  # no CSP violation, no error
    assert page.get_by_role("heading", level=1).inner_text() == "Gatekeeper report for contoso"
    headings = page.get_by_role("heading", level=2).all_inner_texts()
    assert headings == [
        "At a glance",
        "Gates by level over time",
        "Approval latency",
        "Override frequency by rule",
        "DORA metrics",
        "Recommendation calibration",
        "AI agents and tools",
        "Where the numbers come from",
    ]
    assert page.get_by_role("img", name="Override frequency by rule").count() == 1
    assert page.get_by_role("img", name="Recommendation calibration: reliability diagram and Brier score").count() == 1
    assert page.get_by_role("img", name="AI agents' action requests by agent and by tool, by decision").count() == 1
    assert page.get_by_role("img").count() == 6
    assert page.locator("script").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.get_by_role("rowheader", name=HOSTILE, exact=True).count() == 1  # shown as text

    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "report.png"), full_page=True)
    assert (OUTPUT / "report.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    (OUTPUT / "report.pdf").write_bytes(pdf)
    context.close()
