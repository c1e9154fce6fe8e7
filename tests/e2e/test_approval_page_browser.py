"""The approval page in a real browser: headless Chromium (Debian's, driven by Playwright) against the
registered functions served over HTTP on 127.0.0.1 (devstack.functions_host, App Service authentication
played in front, the local Durable HTTP API behind, gates in Azurite). Screenshots go to
test-output/screenshots/ (not committed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.server import LocalServer, Response
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.services import set_services
from tests.conftest import ROOT
from tests.support.approval_gates import ANNA, HOSTILE_REPOSITORY, PEOPLE, PIET, PageRig, page_rig
from tests.support.gatekeeper_env import make_env

pytestmark = pytest.mark.azurite

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-output" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium; skipped only where it is missing, and under CI=true a skip is a failure
    (tests/conftest.py), so CI cannot pass without having run these."""
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make bootstrap installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def rig(azurite, tmp_path) -> Iterator[PageRig]:
    env = make_env(
        azurite.connection_string, tmp_path / "keys", extra_environ={"GATEKEEPER_TRUST_EASYAUTH_HEADER": "true"}
    )
    set_services(env.services)
    try:
        with page_rig(env) as rig:
            yield rig
    finally:
        set_services(None)


@dataclass
class Tab:
    """One person's browser (own cookies), with everything the page did that it must not do."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def open_page(browser: Any, rig: PageRig, oid: str, gate_id: str) -> Tab:
    """Sign in as `oid` the way a click from mail does: the page sends us to App Service's login, which
    sends us back."""
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    tab = Tab(page)

    def dialog(d: Any) -> None:
        tab.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: tab.errors.append(str(e)))
    rig.host.sign_in_as = PEOPLE[oid]
    response = page.goto(rig.page_url(gate_id))
    assert response is not None and response.status == 200
    assert page.url == rig.page_url(gate_id)
    assert [r[2] for r in rig.host.requests_to("/", "GET")][-3:] == [302, 302, 200]  # page -> login -> page
    return tab


def test_an_approver_opens_the_page_sees_the_details_and_approves(browser, rig):
    gate = rig.gate()
    tab = open_page(browser, rig, ANNA, gate)
    page = tab.page
    assert page.title() == "deploy contoso/webshop to production - Gatekeeper"
    assert page.get_by_role("heading", level=1).inner_text() == "deploy contoso/webshop to production"
    assert page.get_by_role("link", name="contoso/webshop").get_attribute("href") == (
        "https://github.com/contoso/webshop"
    )
    body = page.locator("main").inner_text()
    for expected in ("production", "refs/heads/main", "a1b2c3d4e5f6", "coverage: 71% < 80%", "SOC2 CC8.1"):
        assert expected in body, expected
    assert "dev@contoso.com" in body and "No votes yet." in body
    tab.shot("approve-1-before")
    page.get_by_label("Comment (optional)").fill("Release notes reviewed")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_load_state()
    assert page.url == rig.page_url(gate)  # Post/Redirect/Get
    assert rig.host.requests_to("/page", "POST")[-1][2] == 303
    [(name, data)] = rig.vote_events(gate)
    assert name == "approval-vote-0" and ANNA in data and '"decision": "approve"' in data
    assert page.get_by_role("status").inner_text().startswith("Your vote: approve")
    assert page.get_by_role("button").count() == 0  # one person, one vote: no buttons any more
    [vote] = rig.store.votes(gate)
    assert (vote.voter_id, vote.comment) == (ANNA, "Release notes reviewed")
    tab.shot("approve-2-after")
    assert tab.dialogs == [] and tab.errors == []


def test_another_approver_rejects_with_a_comment(browser, rig):
    gate = rig.gate()
    tab = open_page(browser, rig, PIET, gate)
    page = tab.page
    page.get_by_role("button", name="Reject").click()  # no comment: the browser asks for one, nothing is sent
    assert rig.host.requests_to("/page", "POST") == []
    assert page.get_by_label("Why you reject (required)").evaluate("e => e.validity.valueMissing") is True
    page.get_by_label("Why you reject (required)").fill("No rollback plan <b>attached</b>")
    page.get_by_role("button", name="Reject").click()
    page.wait_for_load_state()
    [(name, data)] = rig.vote_events(gate)
    assert name == "approval-vote-0" and PIET in data and '"decision": "reject"' in data
    [vote] = rig.store.votes(gate)
    assert vote.comment == "No rollback plan <b>attached</b>"
    row = page.get_by_role("row").filter(has_text=PIET)
    assert "No rollback plan <b>attached</b>" in row.inner_text()  # shown as typed, not as markup
    assert page.locator("main b").count() == 0
    tab.shot("reject")
    assert tab.dialogs == [] and tab.errors == []


def test_an_expired_or_decided_gate_shows_the_outcome_and_no_buttons(browser, rig):
    expired = rig.gate(deadline_in=-timedelta(minutes=5))
    tab = open_page(browser, rig, ANNA, expired)
    assert tab.page.get_by_role("button").count() == 0 and tab.page.locator("form").count() == 0
    assert "Expired: the deadline passed" in tab.page.locator("main").inner_text()
    tab.shot("expired")
    decided = rig.gate(status=GateStatus.REJECTED, outcome_reason="approval chain rejected (timeout)")
    tab.page.goto(rig.page_url(decided))
    text = tab.page.locator("main").inner_text()
    assert "Outcome: Rejected" in text and "approval chain rejected (timeout)" in text
    assert tab.page.get_by_role("button").count() == 0
    tab.shot("decided")
    assert tab.dialogs == [] and tab.errors == []


def test_a_hostile_repository_name_renders_as_text(browser, rig):
    subject = {
        "repository": HOSTILE_REPOSITORY,
        "environment": "production",
        "ref": "refs/heads/<svg onload=alert(5)>",
        "commit": "[x](https://evil.example)",
    }
    gate = rig.gate(
        subject=subject,
        title=f"deploy {HOSTILE_REPOSITORY}",
        repository_url="javascript:alert(4)",
        commit_url='https://github.com/contoso/x/commit/1"onmouseover="alert(6)',
    )
    tab = open_page(browser, rig, ANNA, gate)
    page = tab.page
    assert page.get_by_role("heading", level=1).inner_text() == f"deploy {HOSTILE_REPOSITORY}"
    where = page.locator("section[aria-labelledby=where] dd")
    assert where.nth(0).inner_text() == HOSTILE_REPOSITORY
    assert where.nth(1).inner_text() == "refs/heads/<svg onload=alert(5)>"
    assert page.evaluate("document.querySelectorAll('script, img, svg, iframe, object, embed').length") == 0
    handlers = "[...document.querySelectorAll('*')].some(e => [...e.attributes].some(a => a.name.startsWith('on')))"
    assert page.evaluate(handlers) is False
    hrefs = page.evaluate("[...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
    assert hrefs == ['https://github.com/contoso/x/commit/1"onmouseover="alert(6)']  # the one https link, inert
    page.get_by_role("link").hover()
    tab.shot("hostile")
    assert tab.dialogs == [] and tab.errors == []


CONTRAST = """() => {
  const channels = c => c.match(/[\\d.]+/g).map(Number);
  const luminance = c => {
    const [r, g, b] = channels(c).slice(0, 3).map(v => v / 255)
      .map(v => (v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4)));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const opaque = c => (channels(c).length < 4 || channels(c)[3] > 0);
  const background = e => {
    for (let n = e; n; n = n.parentElement) {
      const c = getComputedStyle(n).backgroundColor;
      if (opaque(c)) return c;
    }
    return "rgb(255, 255, 255)";
  };
  const found = [];
  for (const e of document.querySelectorAll("body *")) {
    if (![...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const [hi, lo] = [luminance(getComputedStyle(e).color), luminance(background(e))].sort((a, b) => b - a);
    found.push([e.tagName, e.textContent.trim().slice(0, 40), (hi + 0.05) / (lo + 0.05)]);
  }
  return found;
}"""


def test_every_text_on_the_page_has_sufficient_contrast(browser, rig):
    """WCAG 2.x AA: at least 4.5:1 for every element with text (computed colours on their painted background),
    on a page with the unresolved-requester warning, links, code,
    the vote table, both buttons."""
    gate = rig.gate(
        requested_by={"oid": None, "resolved": False, "seen_as": ["github:login:someone"], "note": "not linked"}
    )
    tab = open_page(browser, rig, ANNA, gate)
    tab.page.get_by_role("button", name="Reject").click()  # empty comment: blocked by the browser
    texts = tab.page.evaluate(CONTRAST)
    assert len(texts) > 40
    low = [(tag, text, round(ratio, 2)) for tag, text, ratio in texts if ratio < 4.5]
    assert low == []
    assert {"BUTTON", "A", "CODE", "STRONG", "DT", "DD"} <= {tag for tag, _, _ in texts}


class AttackerSite(LocalServer):
    """Another site (http://localhost:<port>, cross-site to 127.0.0.1) whose page posts the approval form."""

    name = "attacker site"

    def __init__(self, target: str, token: str) -> None:
        super().__init__()
        self.target, self.token = target, token

    def route(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> Response:
        html = (
            "<!DOCTYPE html><html lang=en><title>win a prize</title>"
            f'<form method="post" action="{self.target}">'
            f'<input type="hidden" name="token" value="{self.token}">'
            '<input type="hidden" name="decision" value="approve">'
            "<button>Claim your prize</button></form></html>"
        )
        return 200, {"Content-Type": "text/html"}, html.encode()


def test_a_cross_site_post_is_refused_and_nothing_recorded(browser, rig):
    gate = rig.gate()
    tab = open_page(browser, rig, ANNA, gate)  # Anna is signed in, with the page cookie, in this browser
    token = tab.page.locator("input[name=token]").first.get_attribute("value")  # even a leaked token
    with AttackerSite(rig.page_url(gate), token) as attacker:
        evil = tab.page.context.new_page()
        evil.goto(f"http://localhost:{attacker.port}/")
        evil.get_by_role("button", name="Claim your prize").click()
        evil.wait_for_load_state()
        assert rig.host.requests_to("/page", "POST")[-1][2] == 403
        assert evil.get_by_role("heading", level=1).inner_text() == "Cross-site form posts are refused"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        evil.screenshot(path=str(SCREENSHOTS / "cross-site-refused.png"))
    assert rig.vote_events(gate) == [] and rig.store.votes(gate) == []
    # the page itself still works in the same browser
    tab.page.reload()
    tab.page.get_by_role("button", name="Approve").click()
    tab.page.wait_for_load_state()
    assert len(rig.vote_events(gate)) == 1
