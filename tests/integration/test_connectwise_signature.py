"""ConnectWise callbacks signed with `x-content-signature` (gatekeeper.ingest.connectwise_signature) through the
real trigger: the vendor's sample callback signed with the key its own site hands out is accepted; a forged
signature, a tampered body, a key URL on another host and a missing signature get the one 401 the other
routes give; the key is fetched once and cached; a site that does not answer is a 503 with Retry-After."""

from __future__ import annotations

import json
import uuid

import azure.functions as func
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from devstack.connectwise_keys import ConnectWiseKeyServer
from gatekeeper.ingest.connectwise_signature import SigningKeys, connectwise_signature, trusted_key_url
from gatekeeper.ingest.queue import decode_message
from gatekeeper.services import set_services
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from tests.conftest import ROOT
from tests.support.gatekeeper_env import http_function, make_env, problem

SAMPLE = ROOT / "tests/fixtures/connectwise/callback-ticket.json"
SIGNING_KEY = "cw-callback-signing-key-5b2f0e"
URL_SECRET = "connectwise-url-secret-0123456789"


@pytest.fixture
def site():
    with ConnectWiseKeyServer(SIGNING_KEY) as server:
        yield server


@pytest.fixture
def env(storage_connection_string, tmp_path, site):
    ids = {name: name[:5] + uuid.uuid4().hex[:10] for name in ("signed", "legacy")}
    env = make_env(
        storage_connection_string,
        tmp_path / "keys",
        extra_tenants=(
            TenantRecord(
                tenant_id=ids["signed"],
                display_name="Fabrikam (signed callbacks)",
                identities=("connectwise:company:fabrikammsp",),
                secrets={SecretPurpose.CONNECTWISE_WEBHOOK: ("env:GKCW_SECRET",)},
                connectwise_site=site.site,
            ),
            TenantRecord(
                tenant_id=ids["legacy"],
                display_name="Fabrikam (secret in the URL)",
                identities=("connectwise:company:fabrikammsp2",),
                secrets={SecretPurpose.CONNECTWISE_WEBHOOK: ("env:GKCW_SECRET",)},
            ),
        ),
        extra_environ={"GKCW_SECRET": URL_SECRET},
    )
    env.services.connectwise_keys = SigningKeys(allow_loopback_http=True)  # the local site speaks http
    env.ids = ids  # type: ignore[attr-defined]
    set_services(env.services)
    yield env
    set_services(None)


def post(tenant_id: str, body: bytes, headers: dict[str, str] | None = None, query: str = "") -> func.HttpResponse:
    request = func.HttpRequest(
        "POST",
        f"http://localhost/api/connectors/connectwise?tenant={tenant_id}{query}",
        headers={"Content-Type": "application/json", **(headers or {})},
        body=body,
        route_params={"vendor": "connectwise"},
    )
    return http_function("connector_webhook")(request)


def reference_401(env) -> dict:
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": env.tenant_id, "x-functions-key": "nope"}
    request = func.HttpRequest("POST", "http://localhost/api/events", headers=headers, body=b"{}")
    response = http_function("generic_events")(request)
    assert response.status_code == 401
    return {k: v for k, v in problem(response).items() if k != "instance"}


def answer(response: func.HttpResponse) -> dict:
    return {k: v for k, v in problem(response).items() if k != "instance"}


def sample() -> dict:
    return json.loads(SAMPLE.read_text())


def test_the_documented_scheme_is_hmac_sha256_under_the_hashed_key():
    import base64
    import hashlib
    import hmac

    body = SAMPLE.read_bytes()
    expected = base64.b64encode(
        hmac.new(hashlib.sha256(SIGNING_KEY.encode()).digest(), body, hashlib.sha256).digest()
    ).decode()
    assert connectwise_signature(SIGNING_KEY, body) == expected
    assert connectwise_signature(SIGNING_KEY + "x", body) != expected


def test_a_signed_callback_is_accepted_and_queued(env, site):
    body, signature = site.sign(sample())
    response = post(env.ids["signed"], body, {"x-content-signature": signature})
    assert response.status_code == 202, response.get_body()
    [text] = env.queued_texts()
    event = decode_message(env.services.sealer, text).event
    assert event.tenant_id == env.ids["signed"] and event.kind.value == "change_approved"
    assert [r.path for r in site.requests] == ["/v4_6_release/system/callbackkey/index.rails"]
    again = post(env.ids["signed"], body, {"x-content-signature": signature})  # the key is cached
    assert again.status_code == 202 and len(site.requests) == 1


def test_forged_tampered_unsigned_and_foreign_key_urls_get_the_same_401(env, site):
    reference = reference_401(env)
    body, signature = site.sign(sample())
    forged = connectwise_signature("not-the-key", body)
    tampered = body.replace(b"Change Approved", b"Change Rejected")
    with ConnectWiseKeyServer(SIGNING_KEY) as elsewhere:  # same key, another host:port: never asked
        foreign_body, foreign_signature = elsewhere.sign(sample())
        attempts = [
            post(env.ids["signed"], body, {"x-content-signature": forged}),
            post(env.ids["signed"], tampered, {"x-content-signature": signature}),
            post(env.ids["signed"], body),  # no signature
            post(env.ids["signed"], body, query=f"&secret={URL_SECRET}"),  # the URL secret no longer opens it
            post(env.ids["signed"], foreign_body, {"x-content-signature": foreign_signature}),
        ]
        assert elsewhere.requests == []  # the foreign key URL was never fetched
    for response in attempts:
        assert response.status_code == 401, response.get_body()
        assert answer(response) == reference
    assert env.queued_texts() == []


def test_another_company_on_the_same_cloud_site_cannot_sign_for_the_tenant(env, site):
    """The site is ConnectWise's cloud, shared by every company on it: a company with its own callback (its own
    key URL on the same host, its own key) signs a body naming the tenant's company. The key URL must name
    the company the body names, and that company must be the tenant's."""
    reference = reference_401(env)
    site.companies["evilmsp"] = "evil-company-signing-key-41"
    forged = {"key_url": site.key_url_of("evilmsp"), "signing_key": "evil-company-signing-key-41"}
    as_tenant, signature = site.sign(sample(), **forged)  # CompanyId: fabrikammsp, the tenant's company
    twice = site.key_url_of("evilmsp").replace("companyName=evilmsp", "companyName=fabrikammsp&companyName=evilmsp")
    doubled, doubled_signature = site.sign(sample(), key_url=twice, signing_key="evil-company-signing-key-41")
    unnamed, unnamed_signature = site.sign({k: v for k, v in sample().items() if k != "CompanyId"}, **forged)
    attempts = [
        post(env.ids["signed"], as_tenant, {"x-content-signature": signature}),
        post(env.ids["signed"], doubled, {"x-content-signature": doubled_signature}),
        post(env.ids["signed"], unnamed, {"x-content-signature": unnamed_signature}),
    ]
    for response in attempts:
        assert response.status_code == 401, response.get_body()
        assert answer(response) == reference
    assert env.queued_texts() == []
    own, own_signature = site.sign(sample() | {"CompanyId": "evilmsp"}, **forged)  # honest about its company
    refused = post(env.ids["signed"], own, {"x-content-signature": own_signature})
    assert refused.status_code == 422 and problem(refused)["field"] == "CompanyId"  # not the tenant's company
    assert env.queued_texts() == []
    body, signature = site.sign(sample())  # the tenant's own company's callback still passes
    assert post(env.ids["signed"], body, {"x-content-signature": signature}).status_code == 202


def test_a_site_that_does_not_hand_out_the_key_is_a_503_with_retry_after(env, site):
    body, signature = site.sign(sample())
    site.fail_next(1, 503)
    response = post(env.ids["signed"], body, {"x-content-signature": signature})
    assert response.status_code == 503
    assert response.headers.get("Retry-After")
    assert SIGNING_KEY not in response.get_body().decode()
    assert env.queued_texts() == []


class StallingSite:
    """A ConnectWise site that sends the key answer's headers, then a few bytes, then stalls (or drops the
    connection): the body read fails after the headers, where the HTTP library's own errors surface."""

    def __init__(self, *, drop: bool) -> None:
        import socket
        import threading

        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._drop = drop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import time

        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{")
                if not self._drop:
                    time.sleep(3)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.mark.parametrize("drop", [False, True], ids=["stalls", "drops"])
def test_a_site_failing_while_the_key_is_read_is_a_503_not_a_crash(drop):
    """The key answer is read as a stream (bounded); a read that times out or ends early after the headers is
    the site's outage, the same DependencyUnavailable (503 with Retry-After) as a refused connection."""
    from gatekeeper.errors import DependencyUnavailable

    stalling = StallingSite(drop=drop)
    try:
        site = f"127.0.0.1:{stalling.port}"
        key_url = f"http://{site}/v4_6_release/system/callbackkey/index.rails?companyName=fabrikammsp&id=1"
        body = json.dumps({**sample(), "Metadata": {"key_url": key_url}}).encode()
        keys = SigningKeys(allow_loopback_http=True, timeout=(1.0, 0.5))
        with pytest.raises(DependencyUnavailable):
            keys.verify(site, body, connectwise_signature("k", body))
    finally:
        stalling.close()


def test_a_tenant_without_a_site_keeps_the_secret_in_the_url(env, site):
    document = sample() | {"CompanyId": "fabrikammsp2"}
    body, signature = site.sign(document)
    assert post(env.ids["legacy"], body, query=f"&secret={URL_SECRET}").status_code == 202
    assert post(env.ids["legacy"], body, {"x-content-signature": signature}).status_code == 401
    assert site.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/v4_6_release/system/callbackkey/index.rails?id=1",
        "https://na.myconnectwise.net.evil.example/key?id=1",
        "https://na.myconnectwise.net:8443/key?id=1",
        "http://na.myconnectwise.net/key?id=1",
        "https://user:pw@na.myconnectwise.net/key?id=1",
        "https://na.myconnectwise.net/key?id=1#frag",
        "https://na.myconnectwise.net:99999/key",
        "not a url",
        "https://[::1/key",
    ],
)
def test_key_urls_off_the_tenants_site_are_not_trusted(url):
    assert trusted_key_url(url, "na.myconnectwise.net") is None


def test_key_urls_on_the_site_are_trusted():
    url = "https://NA.myconnectwise.net/v4_6_release/system/callbackkey/index.rails?id=1"
    assert trusted_key_url(url, "na.myconnectwise.net") == url
    assert trusted_key_url("https://na.myconnectwise.net:443/k?id=1", "na.myconnectwise.net") is not None
    assert trusted_key_url("http://127.0.0.1:5/k", "127.0.0.1:5") is None  # loopback http only in development
    assert trusted_key_url("http://127.0.0.1:5/k", "127.0.0.1:5", allow_loopback_http=True) is not None


def test_hostile_bodies_and_headers_are_refused_without_a_fetch(site):
    keys = SigningKeys(allow_loopback_http=True)
    body, signature = site.sign(sample())
    assert not keys.verify(site.site, b"[" * 500 + b"]" * 500, signature)
    assert not keys.verify(site.site, b'{"Metadata": {"key_url": "a", "key_url": "b"}}', signature)
    assert not keys.verify(site.site, body, "A" * 10_000)
    assert not keys.verify(None, body, signature)
    assert keys.fetches == 0 and site.requests == []
    assert keys.verify(site.site, body, signature)


def test_a_rotated_key_is_refetched_at_most_once_a_minute(site):
    now = [1000.0]
    keys = SigningKeys(allow_loopback_http=True, clock=lambda: now[0])
    body, signature = site.sign(sample())
    assert keys.verify(site.site, body, signature) and keys.fetches == 1
    site.signing_key = "rotated-key-77"
    body2, signature2 = site.sign(sample())
    assert not keys.verify(site.site, body2, signature2)  # cached key, too soon to refetch
    assert keys.fetches == 1
    now[0] += 61
    assert keys.verify(site.site, body2, signature2) and keys.fetches == 2
    forged = connectwise_signature("forged", body2)
    for _ in range(5):  # forgeries within the minute do not become fetches
        assert not keys.verify(site.site, body2, forged)
    assert keys.fetches == 2


@hypothesis_settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_no_url_off_the_site_is_ever_trusted(prefix: str, suffix: str):
    from urllib.parse import urlsplit

    for url in (prefix + "na.myconnectwise.net" + suffix, "https://" + prefix + "na.myconnectwise.net" + suffix):
        trusted = trusted_key_url(url, "na.myconnectwise.net")
        if trusted is not None:
            parts = urlsplit(trusted)
            assert parts.scheme == "https" and parts.hostname == "na.myconnectwise.net"
            assert parts.port in (None, 443) and parts.username is None and not parts.fragment


# ----- planted bugs no test caught ---------------------------------------------------------------------------


def test_a_company_whose_name_extends_the_tenants_cannot_sign_for_it(site):
    """`fabrikammsp-evil` on the same cloud site signs a body claiming `fabrikammsp`: the key URL must name
    exactly the body's company, not one that merely starts with it."""
    site.companies["fabrikammsp-evil"] = "extended-name-signing-key-9"
    body, signature = site.sign(
        sample(), key_url=site.key_url_of("fabrikammsp-evil"), signing_key="extended-name-signing-key-9"
    )
    keys = SigningKeys(allow_loopback_http=True)
    assert not keys.verify(site.site, body, signature)
    assert keys.fetches == 0  # refused on the names, before the key is asked for


@pytest.mark.parametrize(
    ("query", "names_it"),
    [
        ("companyName=fabrikammsp&id=1", True),
        ("CompanyName=Fabrikammsp&id=1", True),  # parameter and company names compare case-insensitively
        ("companyName=fabrikammsp&companyName=evilmsp&id=1", False),  # two companies: which key is it?
        ("companyName=fabrikammsp&companyname=fabrikammsp&id=1", False),
        ("id=1", False),
        ("companyName=fabrikammsp2&id=1", False),
    ],
)
def test_the_key_url_must_name_the_bodys_company_exactly_once(query, names_it):
    from gatekeeper.ingest.connectwise_signature import key_names_the_callers_company

    body = json.dumps(sample()).encode()  # CompanyId: fabrikammsp
    url = f"https://na.myconnectwise.net/v4_6_release/system/callbackkey/index.rails?{query}"
    assert key_names_the_callers_company(url, body) is names_it


@pytest.mark.parametrize(
    "url",
    [
        "https://na.myconnectwise.net/k ey?id=1",
        "https://na.myconnectwise.net/key?id=1\n",
        "https://na.myconnectwise.net/key?id=1\t",
    ],
)
def test_a_key_url_with_blanks_is_not_trusted(url):
    assert trusted_key_url(url, "na.myconnectwise.net") is None


def test_plain_http_on_a_local_site_compares_with_port_80():
    assert trusted_key_url("http://127.0.0.1/k?id=1", "127.0.0.1:80", allow_loopback_http=True) is not None
    assert trusted_key_url("http://127.0.0.1/k?id=1", "127.0.0.1:443", allow_loopback_http=True) is None


def test_an_overlong_key_url_is_not_read():
    from gatekeeper.ingest.connectwise_signature import MAX_KEY_URL_CHARS, key_url_of

    def body(url: str) -> bytes:
        return json.dumps({"Metadata": {"key_url": url}}).encode()

    fits = "https://na.myconnectwise.net/k?id=" + "1" * (MAX_KEY_URL_CHARS - 34)
    assert len(fits) == MAX_KEY_URL_CHARS and key_url_of(body(fits)) == fits
    assert key_url_of(body(fits + "1")) is None


def test_a_cached_key_is_fetched_again_after_an_hour(site):
    now = [1000.0]
    keys = SigningKeys(allow_loopback_http=True, clock=lambda: now[0])
    body, signature = site.sign(sample())
    assert keys.verify(site.site, body, signature) and keys.fetches == 1
    now[0] += 3599
    assert keys.verify(site.site, body, signature) and keys.fetches == 1
    now[0] += 1
    assert keys.verify(site.site, body, signature) and keys.fetches == 2


def test_the_key_cache_is_bounded(site, monkeypatch):
    from gatekeeper.ingest import connectwise_signature as module

    monkeypatch.setattr(module, "MAX_CACHED_KEYS", 3)
    keys = SigningKeys(allow_loopback_http=True)
    for n in range(5):
        url = site.key_url.replace("id=", f"id={n}-")
        body, signature = site.sign(sample(), key_url=url)
        assert keys.verify(site.site, body, signature)
    assert repr(keys) == "SigningKeys(cached=3)"


def test_a_key_answer_that_is_too_large_or_too_long_is_the_sites_outage(site):
    from gatekeeper.errors import DependencyUnavailable

    body, signature = site.sign(sample())
    site.answer_huge(1, 100_000, path_contains="callbackkey")
    with pytest.raises(DependencyUnavailable):
        SigningKeys(allow_loopback_http=True).verify(site.site, body, signature)
    site.signing_key = "k" * 1025
    body, signature = site.sign(sample())
    with pytest.raises(DependencyUnavailable):
        SigningKeys(allow_loopback_http=True).verify(site.site, body, signature)


def test_a_redirect_from_the_key_url_is_not_followed():
    """The key URL was checked to be on the tenant's site; a redirect could lead anywhere, so the site
    answering one is an outage, not a key (and the place it points to is never asked)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from gatekeeper.errors import DependencyUnavailable

    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path.startswith("/elsewhere"):
                payload = json.dumps({"signing_key": SIGNING_KEY}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = f"127.0.0.1:{server.server_address[1]}"
        key_url = f"http://{site}/v4_6_release/system/callbackkey/index.rails?companyName=fabrikammsp&id=1"
        body = json.dumps({**sample(), "Metadata": {"key_url": key_url}}).encode()
        with pytest.raises(DependencyUnavailable):
            SigningKeys(allow_loopback_http=True).verify(site, body, connectwise_signature(SIGNING_KEY, body))
        assert not any(p.startswith("/elsewhere") for p in asked)
    finally:
        server.shutdown()
