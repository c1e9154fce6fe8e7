"""The approval page's routes over real HTTP (devstack.functions_host serving the registered functions, App
Service authentication played in front, the local Durable HTTP API behind, gates in Azurite): sign-in
redirects, bearer tokens, HTML refusals with the API's wording, and every CSRF refusal recording nothing."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devstack.entra_issuer import LocalEntraIssuer
from gatekeeper.gates.page_guard import COOKIE_NAME
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import set_services
from tests.support.approval_gates import ANNA, PEOPLE, PIET, SARA, PageRig, page_rig
from tests.support.gatekeeper_env import ENTRA_TENANT, make_env

pytestmark = pytest.mark.azurite

AUDIENCE = "api://gatekeeper-approval-page"
TIMEOUT = 30


def http_get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT, **kwargs)


def http_post(url: str, **kwargs: Any) -> requests.Response:
    return requests.post(url, timeout=TIMEOUT, **kwargs)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalEntraIssuer]:
    with LocalEntraIssuer() as server:
        yield server


@pytest.fixture
def rig(azurite, tmp_path, issuer) -> Iterator[PageRig]:
    env = make_env(
        azurite.connection_string, tmp_path / "keys", extra_environ={"GATEKEEPER_TRUST_EASYAUTH_HEADER": "true"}
    )
    env.services.token_validator = EntraTokenValidator(
        AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: True
    )
    set_services(env.services)
    try:
        with page_rig(env) as rig:
            yield rig
    finally:
        set_services(None)


class Visitor:
    """A browser without a browser: App Service's session cookie, the page cookie, the form token."""

    def __init__(self, rig: PageRig, oid: str) -> None:
        self.rig = rig
        rig.host.sign_in_as = PEOPLE[oid]
        login = http_get(f"{rig.host.url}/.auth/login/aad?post_login_redirect_uri=/", allow_redirects=False)
        self.session = login.cookies["AppServiceAuthSession"]
        self.page_cookie: str | None = None

    def cookies(self, page_cookie: bool = True) -> str:
        jar = f"AppServiceAuthSession={self.session}"
        return jar + (f"; {COOKIE_NAME}={self.page_cookie}" if page_cookie and self.page_cookie else "")

    def get(self, gate_id: str) -> requests.Response:
        response = http_get(
            self.rig.page_url(gate_id),
            headers={"Accept": "text/html", "Cookie": self.cookies()},
            allow_redirects=False,
        )
        found = re.search(rf"{COOKIE_NAME}=([^;]+)", response.headers.get("Set-Cookie", ""))
        if found:
            self.page_cookie = found.group(1)
        return response

    def token(self, gate_id: str) -> str:
        found = re.search(r'name="token" value="([^"]+)"', self.get(gate_id).text)
        assert found, "the page offers no form"
        return html.unescape(found.group(1))

    def post(
        self, gate_id: str, fields: dict[str, str], *, page_cookie: bool = True, headers: dict[str, str] | None = None
    ) -> requests.Response:
        return http_post(
            self.rig.page_url(gate_id),
            data=fields,
            headers={
                "Cookie": self.cookies(page_cookie),
                "Sec-Fetch-Site": "same-origin",
                "Origin": self.rig.host.url,
                **(headers or {}),
            },
            allow_redirects=False,
        )


def assert_page_headers(response: requests.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'sha256-")


def nothing_recorded(rig: PageRig, gate_id: str) -> None:
    assert rig.vote_events(gate_id) == []
    assert rig.store.votes(gate_id) == []


def test_a_browser_without_an_identity_is_sent_to_sign_in_and_comes_back(rig):
    gate = rig.gate()
    response = http_get(rig.page_url(gate), headers={"Accept": "text/html"}, allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == (
        "/.auth/login/aad?post_login_redirect_uri=" + quote(f"/api/approvals/{gate}/page", safe="")
    )
    assert_page_headers(response)
    # a client that is not a browser gets the refusal itself
    api = http_get(rig.page_url(gate), headers={"Accept": "application/json"}, allow_redirects=False)
    assert api.status_code == 401 and api.headers["Content-Type"].startswith("text/html")
    assert api.headers["WWW-Authenticate"].startswith("Bearer")
    # a forged principal header is stripped by the platform: still not signed in
    forged = http_get(
        rig.page_url(gate),
        headers={"Accept": "text/html", "X-MS-CLIENT-PRINCIPAL": PEOPLE[ANNA].client_principal()},
        allow_redirects=False,
    )
    assert forged.status_code == 302


def test_a_bearer_token_keeps_working_and_a_signed_in_approver_gets_the_page_and_a_cookie(rig, issuer):
    gate = rig.gate()
    token = issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE, upn="anna@contoso.com")
    response = http_get(rig.page_url(gate), headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
    assert response.status_code == 200 and "<h1>deploy contoso/webshop to production</h1>" in response.text
    visitor = Visitor(rig, ANNA)
    page = visitor.get(gate)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_page_headers(page)
    assert page.headers["Set-Cookie"].endswith("; Path=/; Secure; HttpOnly; SameSite=Strict")
    assert '<button type="submit" class="approve">Approve</button>' in page.text
    again = visitor.get(gate)  # the browser sends the cookie back: it is kept, not replaced
    assert "Set-Cookie" not in again.headers


def test_refusals_render_as_html_with_the_apis_wording_and_status(rig):
    gate = rig.gate()
    visitor = Visitor(rig, SARA)  # same tenant, not an approver
    page = visitor.get(gate)
    headers = {"Cookie": visitor.cookies(), "Accept": "application/json"}
    api = http_get(f"{rig.host.url}/api/approvals/{gate}", headers=headers).json()
    assert page.status_code == api["status"] == 403
    assert f"<h1>{html.escape(api['title'])}</h1>" in page.text and html.escape(api["detail"]) in page.text
    assert_page_headers(page)
    missing = visitor.get("gate-" + "0" * 32)
    assert missing.status_code == 404 and "<h1>Gate not found</h1>" in missing.text


def test_a_post_is_decided_once_and_answered_with_a_redirect_to_the_page(rig):
    gate = rig.gate()
    visitor = Visitor(rig, ANNA)
    token = visitor.token(gate)
    response = visitor.post(gate, {"token": token, "decision": "approve", "comment": "ok"})
    assert response.status_code == 303 and response.headers["Location"] == f"/api/approvals/{gate}/page"
    [(name, _)] = rig.vote_events(gate)
    assert name == "approval-vote-0"
    again = visitor.post(gate, {"token": token, "decision": "approve"})
    assert again.status_code == 409 and "one person counts once" in again.text and "<form" not in again.text
    assert len(rig.vote_events(gate)) == 1


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("no page cookie", 403, "did not send the approval page"),
        ("no token", 403, "was not issued to you"),
        ("token of another gate", 403, "was not issued to you"),
        ("token of another approver", 403, "was not issued to you"),
        ("token under an unknown data key", 403, "was not issued to you"),
        ("another browser's cookie", 403, "was not issued to you"),
        ("cross-site fetch metadata", 403, "posted from another site"),
        ("another origin", 403, "posted from another site"),
        ("json body", 415, "form-urlencoded"),
        ("reject without a comment", 422, "say why you reject"),
        ("oversize form", 413, "At most"),
        ("duplicate field", 422, "given more than once"),
    ],
)
def test_a_post_that_fails_a_check_records_nothing(rig, case: str, status: int, slug: str):
    gate, other_gate = rig.gate(), rig.gate()
    anna, piet = Visitor(rig, ANNA), Visitor(rig, PIET)
    fields: dict[str, Any] = {"token": anna.token(gate), "decision": "approve"}
    kwargs: dict[str, Any] = {}
    if case == "no page cookie":
        kwargs["page_cookie"] = False
    elif case == "no token":
        fields.pop("token")
    elif case == "token of another gate":
        fields["token"] = anna.token(other_gate)
    elif case == "token of another approver":
        fields["token"] = piet.token(gate)
    elif case == "token under an unknown data key":
        version, _, nonce, sealed = fields["token"].split(".")
        fields["token"] = ".".join((version, "0123456789abcdef", nonce, sealed))
    elif case == "another browser's cookie":
        piet.token(gate)
        anna.page_cookie = piet.page_cookie
    elif case == "cross-site fetch metadata":
        kwargs["headers"] = {"Sec-Fetch-Site": "cross-site", "Origin": "null"}
    elif case == "another origin":
        kwargs["headers"] = {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:1"}
    elif case == "json body":
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif case == "reject without a comment":
        fields |= {"decision": "reject", "comment": "   "}
    elif case == "oversize form":
        fields["comment"] = "x" * 9000
    response = (
        http_post(
            rig.page_url(gate),
            data=f"token={quote(fields['token'])}&decision=approve&decision=reject",
            headers={
                "Cookie": anna.cookies(),
                "Content-Type": "application/x-www-form-urlencoded",
                "Sec-Fetch-Site": "same-origin",
            },
            allow_redirects=False,
        )
        if case == "duplicate field"
        else anna.post(gate, fields, **kwargs)
    )
    assert response.status_code == status, response.text
    assert slug in html.unescape(response.text)
    assert response.headers["Content-Type"].startswith("text/html")
    assert_page_headers(response)
    nothing_recorded(rig, gate)


def test_the_links_in_notifications_open_the_page(rig):
    gate = rig.gate()
    link = rig.env.services.approval_link(gate)
    assert link == f"{rig.host.url}/api/approvals/{gate}/page"
    visitor = Visitor(rig, ANNA)
    response = http_get(link, headers={"Accept": "text/html", "Cookie": visitor.cookies()})
    assert response.status_code == 200 and "Approve" in response.text


def test_seeded_random_form_posts_never_answer_5xx_and_record_nothing(rig):
    """Mutations of a valid form post by a signed-in approver with the right cookie: random bytes, random
    field names and values, mangled tokens, invalid percent-encoding. Every answer is a 4xx page, no vote."""
    import random

    gate = rig.gate()
    anna = Visitor(rig, ANNA)
    token = anna.token(gate)
    rng = random.Random(1212)
    alphabet = "abcdefghijklmnopqrstuvwxyz=&%+;_-.~0123456789ÿ€\u0000"
    statuses = set()
    for case in range(60):
        kind = case % 4
        if kind == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        elif kind == 1:
            body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 120))).encode("utf-8", "replace")
        elif kind == 2:
            mangled = list(token)
            at = rng.randrange(len(mangled))
            mangled[at] = rng.choice([c for c in "AZaz09-_." if c != mangled[at]])
            body = f"token={quote(''.join(mangled))}&decision=approve".encode()
        else:
            decision = "".join(rng.choice("approverejct ") for _ in range(rng.randrange(0, 9)))
            if decision.strip().lower() in ("approve", "reject"):
                decision += "x"
            body = f"token={quote(token)}&decision={quote(decision)}&comment=c".encode()
        response = http_post(
            rig.page_url(gate),
            data=body,
            headers={
                "Cookie": anna.cookies(),
                "Content-Type": "application/x-www-form-urlencoded",
                "Sec-Fetch-Site": "same-origin",
            },
            allow_redirects=False,
        )
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text[:300])
        assert response.headers["Content-Type"].startswith("text/html")
        statuses.add(response.status_code)
    assert statuses >= {403, 422}
    nothing_recorded(rig, gate)
