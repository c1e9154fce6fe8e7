"""The demo's last act: `gatekeeper report` over the audit log the demo just wrote, and a screenshot of it.

The command runs as an operator runs it (the CLI with the storage and key settings `_audit` set), for the
period up to the demo's own clock; headless Chromium opens report.html from disk, as a person would open an
attachment, and saves demo-output/report.png. Requests that leave file:// are counted and shown (none are
expected: the page loads nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from gatekeeper.cli import main as gatekeeper_cli

if TYPE_CHECKING:
    from demo.story import Demo

CHROMIUM = Path("/usr/bin/chromium")


def report(demo: Demo, tenant: str) -> None:
    t = demo.timeline
    out = demo.out_dir
    t.section("9. The report: a month of gates, approvals, overrides and DORA, from the audit log")
    until = demo.timeline.clock.now().isoformat()
    code = gatekeeper_cli(["report", "--tenant", tenant, "--since", "30d", "--until", until, "--out", str(out)])
    t.say(f"gatekeeper report --tenant {tenant} --since 30d -> {out / 'report.html'}, report.json (exit {code})")
    if code != 0:
        raise SystemExit(code)
    figures = json.loads((out / "report.json").read_text())
    s, dora = figures["summary"], figures["dora"]
    t.say(
        f"{s['gates']} gates {figures['gates']['by_level']}, approval p50 {s['approval_p50_minutes']} min, "
        f"{s['overrides']} overrides",
        indent=1,
    )
    t.say(
        f"DORA: {dora['deployments']} deployments, change failure rate {dora['change_failure_rate']['rate']}, "
        f"time to restore p50 {dora['time_to_restore']['p50']} min",
        indent=1,
    )
    agents = figures["agents"]
    tools = ", ".join(f"{r['tool']} {r['denied']} of {r['requests']}" for r in agents["by_tool"][:3])
    t.say(
        f"AI agents: {agents['requests']} requests by {len(agents['by_agent'])} agents, {agents['denied']} denied "
        f"(denied by tool: {tools or 'none'}), {agents['executed_refused']} refused executed reports",
        indent=1,
    )
    _screenshot(demo, out / "report.html", out / "report.png")


def _screenshot(demo: Demo, page_file: Path, png: Path) -> None:
    if not CHROMIUM.exists():
        demo.timeline.say(f"report screenshot skipped: {CHROMIUM} is missing (make demo installs it)")
        return
    from playwright.sync_api import sync_playwright

    page_url = page_file.resolve().as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if r.url != page_url else None)
            page.goto(page_url)
            page.wait_for_load_state("networkidle")
            charts = page.get_by_role("img").count()
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()
    demo.timeline.say(
        f"report.html in headless Chromium: {charts} charts, {len(outside)} requests beyond the file -> {png.name}",
        indent=1,
    )
