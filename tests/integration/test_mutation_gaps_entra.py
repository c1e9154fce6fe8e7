"""Entra token edges (issue 21: survivors of `make mutation MODULES=signatures`).

The size limit is checked before anything is parsed, and a key endpoint that fails on its side (5xx) is a
retryable 503, while one that says the tenant has no keys (4xx) is the caller's 401.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest

from devstack.entra_issuer import LocalEntraIssuer
from functions.http import status_of
from gatekeeper.errors import GatekeeperError
from gatekeeper.security.entra import MAX_TOKEN_CHARS, EntraTokenValidator, principal_from_claims
from gatekeeper.security.signatures import basic_auth_password

AUDIENCE = "8f5b1c0e-2d4a-4e6b-9c7d-1e2f3a4b5c6d"
OID = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"


def _refusal(validator: EntraTokenValidator, token: str) -> GatekeeperError:
    with pytest.raises(GatekeeperError) as info:
        validator.validate(token)
    return info.value


def test_the_size_limit_is_sixteen_kib_and_checked_first():
    validator = EntraTokenValidator(AUDIENCE, "http://127.0.0.1:9")
    assert MAX_TOKEN_CHARS == 16 * 1024
    for token in ("", "x" * (MAX_TOKEN_CHARS + 1)):
        problem = _refusal(validator, token)
        assert (status_of(problem), problem.extra["reason"]) == (401, "malformed")
        assert "missing or too large" in problem.detail
    at_limit = _refusal(validator, "x" * MAX_TOKEN_CHARS)  # within the limit: refused as not a JWT instead
    assert at_limit.extra["reason"] == "malformed" and "well-formed" in at_limit.detail


class _Failing(BaseHTTPRequestHandler):
    status = 500

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "server_error"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_authority() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "expected"), [(500, 503), (503, 503), (400, 401), (404, 401), (499, 401)])
def test_key_endpoint_errors_on_its_side_are_503_on_the_callers_side_401(failing_authority, status, expected):
    _Failing.status = status
    host = f"http://127.0.0.1:{failing_authority.server_address[1]}"
    tid = str(uuid.uuid4())
    with LocalEntraIssuer() as issuer:
        token = issuer.issue(OID, tid, AUDIENCE, issuer=f"{host}/{tid}/v2.0")
    problem = _refusal(EntraTokenValidator(AUDIENCE, host, http_timeout_seconds=5), token)
    assert status_of(problem) == expected
    if expected == 401:
        assert problem.extra["reason"] == "unknown-key"


def test_basic_auth_refuses_characters_outside_the_base64_alphabet():
    assert basic_auth_password("Basic dTpw") == "p"  # "u:p"
    assert basic_auth_password("Basic dT*pw") is None  # a lenient decoder would drop the '*' and accept it


def test_the_documented_defaults_hold():
    """docs/security.md: 60 s leeway on exp/nbf/iat, one refetch per 30 s cooldown, 16 KiB tokens."""
    validator = EntraTokenValidator(AUDIENCE)
    assert validator.leeway_seconds == 60
    assert validator.jwks_cache_seconds == 3600
    assert validator.http_timeout_seconds == 10
    assert validator.refresh_cooldown_seconds == 30
    assert MAX_TOKEN_CHARS == 16 * 1024


def test_at_most_256_tenants_keep_a_key_client_least_recently_used_first_out():
    validator = EntraTokenValidator(AUDIENCE, "http://127.0.0.1:9")  # creating a client fetches nothing
    tids = [str(uuid.UUID(int=i)) for i in range(257)]
    first = validator._client_for(tids[0])
    for tid in tids[1:256]:
        validator._client_for(tid)
    assert validator._client_for(tids[0]) is first  # 256 fit; touching the first makes it the most recent
    validator._client_for(tids[256])
    assert len(validator._clients) == 256
    assert tids[1] not in validator._clients and tids[0] in validator._clients


@pytest.mark.parametrize("kid", [""])
def test_a_token_without_a_usable_kid_is_refused_before_any_key_fetch(kid):
    tid = str(uuid.uuid4())
    with LocalEntraIssuer() as issuer:
        claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
        token = issuer.sign(claims, headers={"kid": kid})
        problem = _refusal(EntraTokenValidator(AUDIENCE, issuer.authority_host), token)
        assert problem.extra["reason"] == "unknown-key" and "names no signing key" in problem.detail
        assert issuer.requests.get(issuer.jwks_path(tid), 0) == 0


@pytest.mark.parametrize("tid", ["not-a-guid", 7, None])
def test_principal_from_claims_refuses_a_tenant_id_that_is_not_a_guid(tid):
    with pytest.raises(GatekeeperError) as info:
        principal_from_claims({"oid": OID, "tid": tid})
    assert info.value.extra["reason"] == "missing-claim"


def test_any_other_token_error_is_a_401_not_a_crash():
    """A PyJWT error without its own branch (here a non-numeric iat) is still a clean 401 `invalid`."""
    tid = str(uuid.uuid4())
    with LocalEntraIssuer() as issuer:
        claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
        problem = _refusal(EntraTokenValidator(AUDIENCE, issuer.authority_host), issuer.sign({**claims, "iat": "soon"}))
    assert (status_of(problem), problem.extra["reason"]) == (401, "invalid")
