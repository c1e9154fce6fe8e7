"""Real PyJWT validation over HTTP against the local Entra-style issuer: accept, refuse, cache, rotate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request
import uuid
from datetime import timedelta

import jwt
import pytest

from devstack.azurite import free_port
from devstack.entra_issuer import LocalEntraIssuer, SigningKey
from functions.http import problem_body, status_of
from gatekeeper.errors import GatekeeperError
from gatekeeper.security.entra import EntraTokenValidator, bearer_token

AUDIENCE = "8f5b1c0e-2d4a-4e6b-9c7d-1e2f3a4b5c6d"
OID = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def issuer():
    with LocalEntraIssuer() as server:
        yield server


@pytest.fixture
def tid() -> str:
    """A fresh tenant per test, so JWKS request counts and caches never mix between tests."""
    return str(uuid.uuid4())


@pytest.fixture
def validator(issuer):
    return EntraTokenValidator(AUDIENCE, issuer.authority_host, jwks_cache_seconds=600)


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refusal(validator, token, expected_tenant_id=None) -> GatekeeperError:
    with pytest.raises(GatekeeperError) as info:
        validator.validate(token, expected_tenant_id)
    problem = info.value
    if len(token) > 8:
        assert token not in str(problem_body(problem))
    return problem


def test_valid_token_is_accepted(issuer, validator, tid):
    token = issuer.issue(
        OID,
        tid,
        AUDIENCE,
        name="Ada Approver",
        upn="ada@contoso.example",
        groups=["0C8D7E6F-1A2B-4C3D-8E9F-AABBCCDDEEFF"],
        roles=["Gatekeeper.Auditor"],
    )
    p = validator.validate(bearer_token(f"Bearer {token}"), expected_tenant_id=tid)
    assert (p.oid, p.tid, p.auth) == (OID, tid, "bearer")
    assert (p.name, p.upn) == ("Ada Approver", "ada@contoso.example")
    assert p.groups == {"0c8d7e6f-1a2b-4c3d-8e9f-aabbccddeeff"}
    assert p.roles == {"Gatekeeper.Auditor"} and not p.app_only


def test_app_only_token_is_marked(issuer, validator, tid):
    p = validator.validate(issuer.issue(OID, tid, AUDIENCE, app_only=True, roles=["Events.Submit"]))
    assert p.app_only and p.roles == {"Events.Submit"} and p.name is None


def test_served_metadata_matches_what_the_validator_expects(issuer, validator, tid):
    url = f"{issuer.authority_host}/{tid}/v2.0/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test server
        metadata = json.load(response)
    assert metadata["issuer"] == validator.issuers(tid)[0]
    assert metadata["jwks_uri"] == validator.jwks_uri(tid)
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"issued_at": time.time() - 7200, "lifetime": timedelta(hours=1)}, "expired"),
        ({"extra_claims": {"nbf": int(time.time()) + 3600}}, "not-yet-valid"),
        ({"issued_at": time.time() + 3600}, "not-yet-valid"),
        ({"audience": "api://someone-else"}, "audience"),
        ({"issuer": "https://login.evil.example/{tid}/v2.0"}, "issuer"),
        ({"issuer": "https://sts.windows.net/{tid}/"}, "issuer"),
        ({"extra_claims": {"oid": "not-a-guid"}}, "missing-claim"),
    ],
)
def test_bad_claims_are_refused_with_401(issuer, validator, tid, overrides, reason):
    args = {"audience": AUDIENCE, **overrides}
    if "issuer" in args:
        args["issuer"] = args["issuer"].format(tid=tid)
    p = refusal(validator, issuer.issue(OID, tid, **args))
    assert (status_of(p), p.code, p.extra["reason"]) == (401, "unauthenticated", reason)


@pytest.mark.parametrize("claim", ["oid", "tid", "exp", "nbf", "iat", "aud"])
def test_missing_required_claim_is_refused(issuer, validator, tid, claim):
    claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
    claims.pop(claim)
    p = refusal(validator, issuer.sign(claims))
    assert (status_of(p), p.extra["reason"]) == (401, "missing-claim")


def test_v1_issuer_only_when_enabled(issuer, tid):
    token = issuer.issue(OID, tid, AUDIENCE, issuer=f"https://sts.windows.net/{tid}/")
    v1 = EntraTokenValidator(AUDIENCE, issuer.authority_host, accept_v1_issuer=True)
    assert v1.validate(token).oid == OID


def test_wrong_tenant_is_403(issuer, validator, tid):
    token = issuer.issue(OID, tid, AUDIENCE)
    p = refusal(validator, token, expected_tenant_id=str(uuid.uuid4()))
    assert (status_of(p), p.code) == (403, "wrong-tenant")


def test_tenant_not_allowed_is_401_before_any_key_fetch(issuer, tid):
    strict = EntraTokenValidator(AUDIENCE, issuer.authority_host, allowed_tenants=lambda t: False)
    p = refusal(strict, issuer.issue(OID, tid, AUDIENCE))
    assert (status_of(p), p.extra["reason"]) == (401, "tenant")
    assert issuer.requests[issuer.jwks_path(tid)] == 0


def test_unknown_kid_is_refused(issuer, validator, tid):
    stranger = SigningKey.generate()
    claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
    token = jwt.encode(claims, stranger.private_key, algorithm="RS256", headers={"kid": stranger.kid})
    assert refusal(validator, token).extra["reason"] == "unknown-key"


def test_published_kid_but_foreign_key_fails_signature(issuer, validator, tid):
    stranger = SigningKey.generate()
    claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
    token = jwt.encode(claims, stranger.private_key, algorithm="RS256", headers={"kid": issuer.kid})
    assert refusal(validator, token).extra["reason"] == "signature"


def test_tampered_payload_fails_signature(issuer, validator, tid):
    header, _payload, signature = issuer.issue(OID, tid, AUDIENCE).split(".")
    claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
    claims["roles"] = ["Gatekeeper.Auditor"]
    p = refusal(validator, f"{header}.{b64(claims)}.{signature}")
    assert (status_of(p), p.extra["reason"]) == (401, "signature")


def test_alg_none_is_refused(issuer, validator, tid):
    claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg, 'typ': 'JWT', 'kid': issuer.kid})}.{b64(claims)}."
        p = refusal(validator, token)
        assert (status_of(p), p.extra["reason"]) == (401, "algorithm")


def test_hs256_signed_with_the_public_key_is_refused(issuer, validator, tid):
    claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid})}.{b64(claims)}"
    mac = hmac.new(issuer.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    p = refusal(validator, f"{signing_input}.{b64(mac)}")
    assert (status_of(p), p.extra["reason"]) == (401, "algorithm")
    assert issuer.requests[issuer.jwks_path(tid)] == 0  # refused before any key lookup


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 20000])
def test_garbage_is_malformed(validator, token):
    assert refusal(validator, token).extra["reason"] == "malformed"


def test_jwks_is_fetched_once_and_cached(issuer, validator, tid):
    for i in range(25):
        oid = str(uuid.UUID(int=i + 1))
        assert validator.validate(issuer.issue(oid, tid, AUDIENCE), expected_tenant_id=tid).oid == oid
    assert issuer.requests[issuer.jwks_path(tid)] == 1


def test_key_rotation_refetches_and_old_tokens_still_verify(issuer, tid):
    validator = EntraTokenValidator(AUDIENCE, issuer.authority_host, refresh_cooldown_seconds=0)
    old = issuer.issue(OID, tid, AUDIENCE)
    assert validator.validate(old).oid == OID
    new_kid = issuer.rotate(keep_previous=True)
    new = issuer.issue(OID, tid, AUDIENCE)
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert validator.validate(new).oid == OID
    assert validator.validate(old).oid == OID
    assert issuer.requests[issuer.jwks_path(tid)] == 2


def test_unknown_kids_cannot_force_a_refetch_storm(issuer, tid):
    validator = EntraTokenValidator(AUDIENCE, issuer.authority_host, refresh_cooldown_seconds=3600)
    validator.validate(issuer.issue(OID, tid, AUDIENCE))
    claims = jwt.decode(issuer.issue(OID, tid, AUDIENCE), options={"verify_signature": False})
    stranger = SigningKey.generate()
    for i in range(10):
        token = jwt.encode(claims, stranger.private_key, algorithm="RS256", headers={"kid": f"k{i}"})
        assert refusal(validator, token).extra["reason"] == "unknown-key"
    assert issuer.requests[issuer.jwks_path(tid)] == 1


def test_unreachable_key_endpoint_is_503(issuer, tid):
    dead = EntraTokenValidator(AUDIENCE, f"http://127.0.0.1:{free_port()}", http_timeout_seconds=2)
    p = refusal(dead, issuer.issue(OID, tid, AUDIENCE))
    assert (status_of(p), p.code) == (503, "identity-provider-unavailable")


def test_unknown_tenant_path_is_401(issuer, tid):
    wrong_host = EntraTokenValidator(AUDIENCE, issuer.authority_host + "/nowhere")
    token = issuer.issue(OID, tid, AUDIENCE, issuer=f"{issuer.authority_host}/nowhere/{tid}/v2.0")
    p = refusal(wrong_host, token)
    assert (status_of(p), p.extra["reason"]) == (401, "unknown-key")
