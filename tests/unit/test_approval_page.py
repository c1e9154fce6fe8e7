"""The approval page without a host: what the HTML shows and escapes (gatekeeper.gates.page), and the CSRF
defences (gatekeeper.gates.page_guard): form tokens, cookies, origins and the bounded form."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.approvals.chain import ChainPlan, Decision
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.errors import Forbidden, InputTooLarge, InvalidInput, UnsupportedMediaType
from gatekeeper.gates import page
from gatekeeper.gates.page_guard import (
    COOKIE_NAME,
    FormGuard,
    check_same_origin,
    cookie_value,
    decision_body,
    new_cookie_value,
    origin_of,
    parse_form,
    set_cookie,
)
from gatekeeper.gates.store import GateRecord, StoredVote
from gatekeeper.gates.view import ApprovalView, build_view
from gatekeeper.security.requester import Requester
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.key_errors import KeyGone

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
ANNA = "0000000a-0000-4000-8000-00000000000a"
PIET = "0000000b-0000-4000-8000-00000000000b"
APP = "https://gatekeeper.contoso.example"


def record(**changes: Any) -> GateRecord:
    base: dict[str, Any] = {
        "instance_id": "gate-1",
        "tenant_id": "contoso",
        "status": GateStatus.AWAITING_APPROVAL,
        "level": "L2",
        "rule": "production-deploy",
        "reasons": ("production needs the CAB",),
        "title": "deploy of contoso/web to production",
        "subject": {
            "source": "github",
            "repository": "contoso/web",
            "repository_url": "https://github.com/contoso/web",
            "environment": "production",
            "ref": "refs/heads/main",
            "commit": "abc123",
        },
        "repository_url": "https://github.com/contoso/web",
        "quality_failing": [{"name": "coverage", "detail": "71% < 80%"}],
        "compliance": [{"framework": "SOC2", "control": "CC8.1"}],
        "requested_by": Requester(oid=None, resolved=False, seen_as=("github:login:octocat",), note="not linked"),
        "created_at": AT,
        "updated_at": AT,
        "plan": ChainPlan.model_validate(
            {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 1, "timeout": "PT1H"}]}
        ),
        "stage": 0,
        "stage_started_at": AT,
        "deadline": AT + timedelta(hours=1),
        "quality": "fail",
        "quality_score": 0.5,
        "recommendation": {
            "verdict": "reject",
            "confidence": 0.81,
            "p_approve": 0.12,
            "model_version": "20261205T024000Z-49460a76",
            "factors": [
                {"name": "rule=production-deploy", "weight": -1.25, "detail": "4 approved and kept, 26 rolled back"},
                {"name": "recent_rollbacks=2+", "weight": -0.94, "detail": "35 approved and kept, 44 rolled back"},
            ],
        },
    }
    base.update(changes)
    return GateRecord.model_validate(base)


def view(can_decide: bool = True, votes: tuple[StoredVote, ...] = (), **changes: Any) -> ApprovalView:
    return build_view(record(**changes), votes, can_decide=can_decide, base_url=APP)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's tokenizer sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "p", "h1", "h2", "section", "dl", "dt",
    "dd", "pre", "code", "a", "ul", "ol", "li", "strong", "span", "time", "table", "caption", "thead", "tbody",
    "tr", "th", "td", "div", "form", "input", "label", "textarea", "button",
}  # fmt: skip


# ----- rendering --------------------------------------------------------------------------------------------


def test_the_page_shows_the_context_an_approver_needs():
    vote = StoredVote(voter_id=PIET, decision=Decision.APPROVE, stage=0, at=AT, seq=0, comment="looks fine")
    html = page.render_page(view(votes=(vote,)), now=AT, form_token="tok", viewer_oid=ANNA)
    text = " ".join(Tags(html).text)
    for expected in (
        "deploy of contoso/web to production",
        "production",
        "contoso/web",
        "refs/heads/main",
        "abc123",
        "Unresolved.",
        "requester unresolved: not linked",
        "github:login:octocat",
        "production needs the CAB",
        "coverage",
        "71% < 80%",
        "SOC2",
        "CC8.1",
        "Recommended:",
        "reject",
        "(confidence 81%, p(approve) 12%, model",
        "20261205T024000Z-49460a76",
        "rule=production-deploy (-1.25): 4 approved and kept, 26 rolled back",
        "recent_rollbacks=2+ (-0.94): 35 approved and kept, 44 rolled back",
        "cab (current), 1 approval(s) needed",
        "looks fine",
        "2026-12-05 10:00 UTC",
        f"{APP}/api/tenants/contoso/audit/export",
    ):
        assert expected in text, expected
    links = [a["href"] for tag, a in Tags(html).tags if tag == "a"]
    assert links == ["https://github.com/contoso/web"]
    plain = page.render_page(view(recommendation=None), now=AT, form_token="tok", viewer_oid=ANNA)
    assert "Recommended:" not in plain  # gates without a recommendation (below L2, no model) show no section


def test_an_action_request_shows_its_exact_command_verbatim_in_a_pre():
    command = 'terraform apply -var "env=prod" <plan.tfplan> && rm -rf ./tmp'
    html = page.render_page(view(subject={"command": command, "environment": "prod"}), now=AT, form_token="t")
    assert f'<pre aria-label="Command"><code>{escape(command)}</code></pre>' in html
    parser = Tags(html)
    assert command in "".join(parser.text)


def test_forms_only_for_a_viewer_who_may_decide_now():
    html = page.render_page(view(), now=AT, form_token="tok-123", viewer_oid=ANNA)
    forms = [a for tag, a in Tags(html).tags if tag == "form"]
    assert [f["method"] for f in forms] == ["post", "post"]
    assert {f["action"] for f in forms} == {"/api/approvals/gate-1/page"}
    hidden = [a for tag, a in Tags(html).tags if tag == "input"]
    pairs = {(a["name"], a["value"]) for a in hidden}
    assert pairs == {("token", "tok-123"), ("decision", "approve"), ("decision", "reject")}
    reject = re.search(r'<textarea id="reject-comment"[^>]*>', html)
    assert reject is not None and " required" in reject.group(0)
    # not an approver now / no token: no forms
    for shown in (page.render_page(view(can_decide=False), now=AT, form_token="t"), page.render_page(view(), now=AT)):
        assert "<form" not in shown and "<button" not in shown


def test_a_decided_or_expired_gate_shows_the_outcome_not_buttons():
    decided = page.render_page(
        view(status=GateStatus.REJECTED, decided_at=AT, outcome_reason="approval chain rejected (timeout)"),
        now=AT,
        form_token="t",
    )
    assert "<form" not in decided and "Outcome: <strong>Rejected</strong>" in decided
    assert "approval chain rejected (timeout)" in decided
    expired = page.render_page(view(), now=AT + timedelta(hours=2), form_token="t")  # can_decide was stale
    assert "<form" not in expired and "Expired: the deadline passed" in expired


def test_the_viewers_own_vote_is_confirmed():
    vote = StoredVote(voter_id=ANNA, decision=Decision.REJECT, stage=0, at=AT, seq=0, comment="no")
    html = page.render_page(view(can_decide=False, votes=(vote,)), now=AT, viewer_oid=ANNA.upper())
    assert 'role="status">Your vote: <strong>reject</strong>' in html


def test_the_page_is_accessible_in_its_structure():
    html = page.render_page(view(), now=AT, form_token="t")
    parser = Tags(html)
    tags = [t for t, _ in parser.tags]
    assert html.startswith("<!DOCTYPE html>") and parser.tags[0] == ("html", {"lang": "en"})
    assert tags.count("h1") == 1 and tags.count("main") == 1 and "title" in tags
    labels = {a["for"] for t, a in parser.tags if t == "label"}
    areas = {a["id"] for t, a in parser.tags if t == "textarea"}
    assert areas and areas <= labels
    assert all(a.get("aria-labelledby") for t, a in parser.tags if t == "section")
    assert "<script" not in html.lower()


def test_the_inline_stylesheet_is_the_one_the_policy_allows_and_nothing_else_loads():
    html = page.render_page(view(), now=AT, form_token="t")
    [style] = re.findall(r"<style>(.*?)</style>", html, re.S)
    digest = "sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = page.HEADERS["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives == {
        "default-src": "'none'",
        "style-src": f"'{digest}'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
    }
    assert page.HEADERS["X-Content-Type-Options"] == "nosniff"
    assert page.HEADERS["Referrer-Policy"] == "no-referrer"
    assert page.HEADERS["Cache-Control"] == "no-store"
    for tag, attrs in Tags(html).tags:
        assert "src" not in attrs and "style" not in attrs, tag


HOSTILE = st.lists(
    st.sampled_from([*"<>\"'&=/ ;:()[]!-`\\", "script", "onerror", "javascript", "img", "a", "x", "\u00e9"]),
    max_size=30,
).map("".join) | st.sampled_from(
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "[click](javascript:alert(1))",
        "</textarea><script>alert(1)</script>",
        "' onmouseover='alert(1)",
        "\u202eevil\u0000",
    ]
)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(value=HOSTILE)
def test_whatever_an_event_says_renders_as_text(value: str):
    """Every field that comes from an event, policy or a vote: no new tag, attribute or link appears."""
    subject = {
        "repository": value,
        "environment": value,
        "ref": value,
        "commit": value,
        "command": value or "x",
        "plan_digest": value,
        "version_tags": [value],
        "quality_failing": [{"name": value or "n", "detail": value}],
        "compliance": [{"framework": value or "f", "control": value or "c"}],
        "repository_url": "https://x/" + value,
    }
    vote = StoredVote(voter_id=value or "v", decision=Decision.APPROVE, stage=0, at=AT, seq=0, comment=value)
    shown = view(title=value, subject=subject, reasons=(value,), rule=value, votes=(vote,))
    html = page.render_page(shown, now=AT, form_token=value or "t", notice=(value, value))
    parser = Tags(html)
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert tag != "a" or str(attrs.get("href", "")).startswith("https://")
    assert [t for t, _ in parser.tags].count("script") == 0
    if value.strip():
        assert value.replace("\u0000", "") in "".join(parser.text) or "\u0000" in value


def test_an_error_page_has_the_problem_wording_escaped():
    html = page.render_problem(403, "Not an approver of this gate", "<b>Only</b> approvers may see it.")
    assert "<h1>Not an approver of this gate</h1>" in html
    assert "&lt;b&gt;Only&lt;/b&gt; approvers may see it." in html and "HTTP status 403" in html


# ----- CSRF: form tokens ------------------------------------------------------------------------------------


class Keys:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], bytes] = {}

    def active_key(self, tenant: str) -> tuple[str, bytes]:
        key_id = "k" + tenant
        self.keys.setdefault((tenant, key_id), secrets.token_bytes(32))
        return key_id, self.keys[(tenant, key_id)]

    def data_key(self, tenant: str, data_key_id: str) -> bytes:
        try:
            return self.keys[(tenant, data_key_id)]
        except KeyError:
            raise KeyGone(data_key_id) from None


class Clock:
    def __init__(self) -> None:
        self.now = AT

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(clock: Clock) -> FormGuard:
    return FormGuard(EnvelopeCipher(Keys()), clock)


def refusal(guard: FormGuard, *args: Any) -> str:
    with pytest.raises(Forbidden) as caught:
        guard.check(*args)
    return caught.value.code


def test_a_token_is_accepted_for_its_tenant_gate_user_and_cookie_only(guard: FormGuard):
    cookie = new_cookie_value()
    token = guard.issue("contoso", "gate-1", ANNA, cookie)
    guard.check("contoso", "gate-1", ANNA, cookie, token)
    guard.check("contoso", "gate-1", ANNA.upper(), cookie, token)  # object ids compare case-insensitively
    assert refusal(guard, "contoso", "gate-2", ANNA, cookie, token) == "form-token-invalid"  # other gate
    assert refusal(guard, "contoso", "gate-1", PIET, cookie, token) == "form-token-invalid"  # other user
    assert refusal(guard, "fabrikam", "gate-1", ANNA, cookie, token) == "form-token-invalid"  # other tenant
    assert refusal(guard, "contoso", "gate-1", ANNA, new_cookie_value(), token) == "form-token-invalid"  # browser
    assert refusal(guard, "contoso", "gate-1", ANNA, None, token) == "form-cookie-missing"
    assert refusal(guard, "contoso", "gate-1", ANNA, cookie, None) == "form-token-invalid"
    assert refusal(guard, "contoso", "gate-1", ANNA, cookie, "") == "form-token-invalid"
    assert refusal(guard, "contoso", "gate-1", ANNA, cookie, "x" * 5000) == "form-token-invalid"


def test_a_token_expires(guard: FormGuard, clock: Clock):
    cookie = new_cookie_value()
    token = guard.issue("contoso", "gate-1", ANNA, cookie)
    clock.now = AT + timedelta(minutes=59)
    guard.check("contoso", "gate-1", ANNA, cookie, token)
    clock.now = AT + timedelta(hours=1)
    assert refusal(guard, "contoso", "gate-1", ANNA, cookie, token) == "form-expired"


@settings(derandomize=True, max_examples=50, deadline=None)
@given(position=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=1, max_value=255))
def test_a_tampered_token_is_refused_never_an_integrity_error(position: int, flip: int):
    guard = FormGuard(EnvelopeCipher(Keys()), lambda: AT)
    cookie = "c" * 43
    token = guard.issue("contoso", "gate-1", ANNA, cookie)
    index = position % len(token)
    tampered = token[:index] + chr((ord(token[index]) ^ flip) % 0x7F or 1) + token[index + 1 :]
    if tampered == token:
        return
    with pytest.raises(Forbidden):
        guard.check("contoso", "gate-1", ANNA, cookie, tampered)


def test_a_token_sealed_for_another_purpose_does_not_open_as_a_form_token():
    cipher = EnvelopeCipher(Keys())
    guard = FormGuard(cipher, lambda: AT)
    cookie = "c" * 43
    other = cipher.seal_json("contoso", "Gates", "gate-1", ANNA, {"g": "gate-1", "u": ANNA, "c": "", "exp": 2**40})
    with pytest.raises(Forbidden):
        guard.check("contoso", "gate-1", ANNA, cookie, other)


# ----- CSRF: cookies and origins ---------------------------------------------------------------------------


def test_the_cookie_is_host_only_secure_httponly_and_strict():
    value = new_cookie_value()
    header = set_cookie(value)
    assert header.startswith(f"{COOKIE_NAME}={value};")
    assert {p.strip() for p in header.split(";")[1:]} == {"Path=/", "Secure", "HttpOnly", "SameSite=Strict"}
    assert cookie_value({"Cookie": f"a=b; {COOKIE_NAME}={value}; c=d"}) == value
    assert cookie_value({"cookie": f"{COOKIE_NAME}={value}; {COOKIE_NAME}={value}"}) is None  # sent twice
    assert cookie_value({"Cookie": f"{COOKIE_NAME}=short"}) is None
    assert cookie_value({}) is None


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),  # no fetch metadata (an old browser, curl): the cookie and token still decide
        ({"Sec-Fetch-Site": "same-origin", "Origin": APP}, True),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "null"}, True),  # our own no-referrer page
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Origin": APP + ":443"}, True),
        ({"Sec-Fetch-Site": "cross-site", "Origin": APP}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),  # a sibling subdomain is not the app
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "https://gatekeeper.contoso.example.evil.example"}, False),
        ({"Origin": "http://gatekeeper.contoso.example"}, False),
        ({"Origin": "null"}, False),  # without same-origin fetch metadata: a sandboxed frame elsewhere
        ({"Sec-Fetch-Site": "cross-site", "Origin": "null"}, False),
        ({"Origin": "not a url"}, False),
    ],
)
def test_a_post_from_another_origin_is_refused(headers: dict[str, str], allowed: bool):
    if allowed:
        check_same_origin(headers, origin_of(APP))
    else:
        with pytest.raises(Forbidden) as caught:
            check_same_origin(headers, origin_of(APP))
        assert caught.value.code == "cross-site-request"


# ----- the form ---------------------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"


def test_the_form_is_bounded_and_has_the_pages_fields_once():
    form = parse_form(b"token=abc&decision=reject&comment=not+now%21", FORM + "; charset=UTF-8")
    assert (form.token, form.decision, form.comment) == ("abc", "reject", "not now!")
    assert decision_body(form) == ("reject", "not now!")
    with pytest.raises(UnsupportedMediaType):
        parse_form(b'{"decision": "approve"}', "application/json")
    with pytest.raises(InputTooLarge):
        parse_form(b"comment=" + b"x" * 9000, FORM)
    for body, field in (
        (b"decision=approve&decision=reject", "decision"),
        (b"token=a&extra=1", "extra"),
        (b"decision=%FF", "body"),
        (b"a&b&c&d&e", "body"),
    ):
        with pytest.raises(InvalidInput) as caught:
            parse_form(body, FORM)
        assert caught.value.field == field, body


def test_a_rejection_must_say_why_and_the_decision_must_be_known():
    with pytest.raises(InvalidInput) as caught:
        decision_body(parse_form(b"token=a&decision=reject&comment=+++", FORM))
    assert caught.value.field == "comment"
    with pytest.raises(InvalidInput) as caught:
        decision_body(parse_form(b"token=a&decision=maybe", FORM))
    assert caught.value.field == "decision"
    with pytest.raises(InvalidInput) as caught:
        decision_body(parse_form(b"decision=approve&comment=" + b"x" * 1001, FORM))
    assert caught.value.field == "comment"
    assert decision_body(parse_form(b"decision=approve", FORM)) == ("approve", "")


# ----- planted bugs no test caught (page_guard) --------------------------------------------------------------


def test_only_the_exact_host_cookie_counts_not_a_lookalike_name():
    value = new_cookie_value()
    for name in ("gk-approval", "x__Host-gk-approval", "__host-gk-approval", "__Secure-gk-approval"):
        assert cookie_value({"Cookie": f"{name}={value}"}) is None, name


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://gk.contoso.example:8443/api/approvals", "https://gk.contoso.example:8443"),
        ("https://GK.contoso.example:443/", "https://gk.contoso.example"),
        ("http://localhost:7071", "http://localhost:7071"),
        ("ftp://gk.contoso.example", None),
        ("javascript:alert(1)", None),
        ("https://", None),
        ("https://gk.contoso.example:99999", None),
    ],
)
def test_an_origin_is_scheme_host_and_a_non_default_port(url, origin):
    assert origin_of(url) == origin


def test_an_origin_on_another_port_or_with_no_configured_app_origin_is_cross_site():
    with pytest.raises(Forbidden):
        check_same_origin({"Origin": "https://gk.contoso.example:8443"}, "https://gk.contoso.example")
    with pytest.raises(Forbidden):  # no GATEKEEPER_APPROVAL_BASE_URL: an Origin cannot be ours
        check_same_origin({"Origin": "https://gk.contoso.example"}, None)
    check_same_origin({"Sec-Fetch-Site": "same-origin"}, None)  # no Origin sent: nothing to compare


def test_an_oversized_token_is_refused_without_being_opened(clock: Clock):
    class CountingCipher(EnvelopeCipher):
        opened = 0

        def open_json(self, *args: Any, **kwargs: Any) -> Any:
            CountingCipher.opened += 1
            return super().open_json(*args, **kwargs)

    guard = FormGuard(CountingCipher(Keys()), clock)
    cookie = new_cookie_value()
    assert refusal(guard, "contoso", "gate-1", ANNA, cookie, "x" * 2049) == "form-token-invalid"
    assert CountingCipher.opened == 0
    token = guard.issue("contoso", "gate-1", ANNA, cookie)
    guard.check("contoso", "gate-1", ANNA, cookie, token)
    assert CountingCipher.opened == 1


@pytest.mark.parametrize(
    "claims",
    [
        {"g": "gate-1", "u": ANNA, "exp": 2**40},  # no cookie hash
        {"g": "gate-1", "u": ANNA, "c": 5, "exp": 2**40},  # a cookie hash that is not text
        {"g": ["gate-1"], "u": ANNA, "c": "h", "exp": 2**40},
        {"u": ANNA, "c": "h", "exp": 2**40},  # no gate
        {"g": "gate-1", "u": PIET, "c": "h", "exp": 2**40},  # sealed for Anna, naming Piet
    ],
)
def test_a_sealed_token_whose_claims_are_not_all_there_as_text_is_refused(claims: dict[str, Any]):
    """Even sealed under the right tenant, gate and person (only a bug or a stolen key could make one), a token
    must carry every bound claim as text."""
    cipher = EnvelopeCipher(Keys())
    guard = FormGuard(cipher, lambda: AT)
    cookie = "c" * 43
    if claims.get("c") == "h":
        claims = {**claims, "c": hashlib.sha256(cookie.encode()).hexdigest()}
    token = cipher.seal_json("contoso", "ApprovalPageForm", "gate-1", ANNA.lower(), claims)
    assert refusal(guard, "contoso", "gate-1", ANNA, cookie, token) == "form-token-invalid"


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/json", "text/plain", None])
def test_only_url_encoded_forms_are_read(content_type):
    with pytest.raises(UnsupportedMediaType):
        parse_form(b"decision=approve", content_type)


def test_a_form_with_more_fields_than_the_page_has_is_refused_before_its_names_are_read():
    with pytest.raises(InvalidInput) as refused:
        parse_form(b"&".join([b"a=1"] * 2000), "application/x-www-form-urlencoded")
    assert refused.value.field == "body"
