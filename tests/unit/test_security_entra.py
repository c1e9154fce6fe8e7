"""Bearer header parsing, validator configuration and claim mapping (no network)."""

from __future__ import annotations

import pytest

from functions.http import problem_body, status_of
from gatekeeper.errors import GatekeeperError
from gatekeeper.security.entra import EntraTokenValidator, bearer_token, principal_from_claims
from gatekeeper.services import build_entra_validator
from gatekeeper.settings import Settings

OID = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.mark.parametrize("header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "  BEARER   abc.def.ghi  "])
def test_bearer_token_extracts_the_token(header):
    assert bearer_token(header) == "abc.def.ghi"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing-token"),
        ("", "missing-token"),
        ("   ", "missing-token"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer a b", "malformed"),
        ("abc.def.ghi", "malformed"),
    ],
)
def test_bearer_token_refuses_other_shapes(header, reason):
    with pytest.raises(GatekeeperError) as info:
        bearer_token(header)
    assert (status_of(info.value), info.value.extra["reason"]) == (401, reason)
    assert "dXNlcjpwYXNz" not in str(problem_body(info.value))


def test_from_settings_reads_audiences_host_and_cache():
    v = build_entra_validator(
        Settings.from_environ(
            {
                "GATEKEEPER_ENTRA_AUDIENCE": "api://gatekeeper, 8f5b1c0e-2d4a-4e6b-9c7d-1e2f3a4b5c6d",
                "GATEKEEPER_ENTRA_AUTHORITY_HOST": "https://login.microsoftonline.us/",
                "GATEKEEPER_ENTRA_JWKS_CACHE_SECONDS": "120",
            }
        )
    )
    assert isinstance(v, EntraTokenValidator)
    assert v.audiences == ["api://gatekeeper", "8f5b1c0e-2d4a-4e6b-9c7d-1e2f3a4b5c6d"]
    assert v.jwks_uri(TID) == f"https://login.microsoftonline.us/{TID}/discovery/v2.0/keys"
    assert v.issuers(TID) == [f"https://login.microsoftonline.us/{TID}/v2.0"]
    assert v.jwks_cache_seconds == 120


def test_from_settings_requires_an_audience():
    with pytest.raises(RuntimeError, match="GATEKEEPER_ENTRA_AUDIENCE"):
        build_entra_validator(Settings.from_environ({}))
    with pytest.raises(ValueError, match="audience"):
        EntraTokenValidator([])


def test_v1_issuer_is_opt_in():
    assert len(EntraTokenValidator("aud").issuers(TID)) == 1
    assert f"https://sts.windows.net/{TID}/" in EntraTokenValidator("aud", accept_v1_issuer=True).issuers(TID)


def test_claims_map_to_principal_with_overage_and_v1_upn():
    p = principal_from_claims(
        {
            "oid": OID,
            "tid": TID,
            "sub": "pairwise",
            "scp": "access_as_user",
            "upn": "ada@contoso.example",
            "_claim_names": {"groups": "src1"},
            "roles": ["A", 7],
            "groups": "not-a-list",
        }
    )
    assert p.upn == "ada@contoso.example" and p.groups_overage and p.groups == frozenset()
    assert p.roles == {"A"} and not p.app_only


def test_app_only_detection_without_idtyp():
    assert principal_from_claims({"oid": OID, "tid": TID, "sub": OID}).app_only
    assert not principal_from_claims({"oid": OID, "tid": TID, "sub": OID, "idtyp": "user"}).app_only


def _rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_verified_claims_gives_each_pyjwt_failure_its_reason_in_the_issuers_words():
    """One mapping for the Entra, GitHub OIDC and bot validators: the reason (slug) per failure is the same for
    all; the Bot Connector's tokens keep their own wording (audience, issuer, missing claim, any other failure)."""
    import time

    import jwt

    from gatekeeper.security.entra import TokenWording, verified_claims
    from gatekeeper.teams.auth import BOT_TOKEN_WORDING

    key, other = _rsa_key(), _rsa_key()
    now = int(time.time())
    good = {"iss": "https://issuer", "aud": "app", "exp": now + 600, "nbf": now - 60, "iat": now - 60, "tid": TID}

    def check(claims, *, signer=key, wording=None, token=None):
        token = token or jwt.encode(claims, signer, algorithm="RS256")
        required = ("iss", "aud", "exp", "nbf", "tid")
        try:
            verified = verified_claims(
                token,
                key=key.public_key(),
                audience="app",
                issuer="https://issuer",
                leeway=0,
                required=required,
                wording=wording or TokenWording(),
            )
        except GatekeeperError as exc:
            assert status_of(exc) == 401
            return exc.extra["reason"], exc.detail
        return "ok", verified["tid"]

    cases = {
        "valid": (good, "ok", TID, TID),
        "expired": ({**good, "exp": now - 10}, "expired", "The bearer token has expired.", None),
        "early": ({**good, "nbf": now + 600}, "not-yet-valid", "The bearer token is not valid yet.", None),
        "audience": (
            {**good, "aud": "other"},
            "audience",
            "The bearer token was issued for another audience.",
            "The bearer token was issued for another bot.",
        ),
        "issuer": (
            {**good, "iss": "https://elsewhere"},
            "issuer",
            "The bearer token's issuer is not accepted.",
            "The bearer token was not issued by the Bot Framework.",
        ),
        "missing": (
            {k: v for k, v in good.items() if k != "tid"},
            "missing-claim",
            "The bearer token lacks the required claim 'tid'.",
            "The bearer token lacks the claim 'tid'.",
        ),
    }
    for name, (claims, reason, detail, bot_detail) in cases.items():
        assert check(claims) == (reason, detail), name
        assert check(claims, wording=BOT_TOKEN_WORDING) == (reason, bot_detail or detail), name

    signature = ("signature", "The bearer token's signature is invalid.")
    assert check(good, signer=other) == signature
    assert check(good, signer=other, wording=BOT_TOKEN_WORDING) == signature
    header, payload, _sig = jwt.encode(good, key, algorithm="RS256").split(".")
    garbled = f"{header}.{payload}.!!"  # not base64url: a DecodeError, no failure of its own
    assert check(good, token=garbled) == ("invalid", "The bearer token is invalid.")
    assert check(good, token=garbled, wording=BOT_TOKEN_WORDING) == signature
