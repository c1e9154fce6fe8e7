"""X-MS-CLIENT-PRINCIPAL decoding, its trust switch, and the tenant and role checks on a Principal."""

from __future__ import annotations

import base64
import json

import pytest

from functions.http import problem_body, status_of
from gatekeeper.errors import GatekeeperError
from gatekeeper.security.identity import identify_caller
from gatekeeper.security.principal import (
    AUDITOR_ROLE,
    Principal,
    check_tenant,
    easyauth_principal,
    function_key_principal,
    principal_from_client_principal_header,
    require_role,
)
from gatekeeper.settings import Settings

OID = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GROUP = "0c8d7e6f-1a2b-4c3d-8e9f-aabbccddeeff"

# Shape as App Service authentication emits it for Entra ID (claims after default claim mapping).
SAMPLE = {
    "auth_typ": "aad",
    "claims": [
        {"typ": "aud", "val": "8f5b1c0e-2d4a-4e6b-9c7d-1e2f3a4b5c6d"},
        {"typ": "iss", "val": f"https://login.microsoftonline.com/{TID}/v2.0"},
        {"typ": "iat", "val": "1700000000"},
        {"typ": "nbf", "val": "1700000000"},
        {"typ": "exp", "val": "1700003600"},
        {"typ": "groups", "val": GROUP.upper()},
        {"typ": "groups", "val": "11111111-2222-4333-8444-555555555555"},
        {"typ": "name", "val": "Ada Approver"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID},
        {"typ": "preferred_username", "val": "ada@contoso.onmicrosoft.com"},
        {"typ": "roles", "val": AUDITOR_ROLE},
        {
            "typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
            "val": "Xy3kP0q9z8w7v6u5t4s3r2q1p0o9n8m7l6k5j4i3h2g",
        },
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TID},
        {"typ": "uti", "val": "AbCdEfGhIjKlMnOpQrStAA"},
        {"typ": "ver", "val": "2.0"},
    ],
    "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
}


def encode(payload: object) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def without(typ: str) -> dict:
    return {**SAMPLE, "claims": [c for c in SAMPLE["claims"] if c["typ"] != typ]}


def test_realistic_header_decodes_to_principal():
    p = principal_from_client_principal_header(encode(SAMPLE))
    assert (p.oid, p.tid, p.auth) == (OID, TID, "easyauth")
    assert p.name == "Ada Approver"
    assert p.upn == "ada@contoso.onmicrosoft.com"
    assert p.groups == {GROUP, "11111111-2222-4333-8444-555555555555"}
    assert p.roles == {AUDITOR_ROLE}
    assert p.app_only is False and p.groups_overage is False
    assert p.in_any_group([GROUP.upper()])


def test_roles_under_the_role_typ_uri_are_read():
    claims = [c for c in SAMPLE["claims"] if c["typ"] != "roles"]
    claims.append({"typ": SAMPLE["role_typ"], "val": "Gatekeeper.Approver"})
    p = principal_from_client_principal_header(encode({**SAMPLE, "claims": claims}))
    assert p.roles == {"Gatekeeper.Approver"}


def test_group_overage_is_flagged():
    payload = {**SAMPLE, "claims": [*without("groups")["claims"], {"typ": "hasgroups", "val": "true"}]}
    p = principal_from_client_principal_header(encode(payload))
    assert p.groups == frozenset() and p.groups_overage is True


def test_unpadded_base64_is_accepted():
    assert principal_from_client_principal_header(encode(SAMPLE).rstrip("=")).oid == OID


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 at all!!",
        base64.b64encode(b"{not json").decode(),
        base64.b64encode(b"\xff\xfe\xfd").decode(),
        encode(["a", "list"]),
        encode({"auth_typ": "aad"}),  # no claims
        encode({"auth_typ": "aad", "claims": [{"typ": "oid"}]}),  # claim without val
        encode({**SAMPLE, "auth_typ": "github"}),
        encode(without("http://schemas.microsoft.com/identity/claims/objectidentifier")),
        encode(without("http://schemas.microsoft.com/identity/claims/tenantid")),
        "A" * (64 * 1024 + 4),
    ],
)
def test_malformed_or_unusable_header_is_401_without_echo(value):
    with pytest.raises(GatekeeperError) as info:
        principal_from_client_principal_header(value)
    assert status_of(info.value) == 401 and info.value.code == "unauthenticated"
    assert "X-MS-CLIENT-PRINCIPAL" in info.value.detail
    assert OID not in str(problem_body(info.value))


def test_header_ignored_unless_easyauth_is_trusted():
    headers = {"x-ms-client-principal": encode(SAMPLE)}
    assert easyauth_principal(headers, trusted=False) is None
    assert easyauth_principal(headers, trusted=Settings.from_environ({}).trust_easyauth_header) is None  # default
    trusted = easyauth_principal(headers, trusted=True)
    assert trusted is not None and trusted.oid == OID
    assert easyauth_principal({}, trusted=True) is None


class _Validator:
    """A token validator that must not be reached when the platform's principal is used."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def validate(self, token: str, expected_tenant_id: str | None = None) -> Principal:
        self.tokens.append(token)
        raise AssertionError("the bearer path was taken")


def test_identify_caller_takes_the_trust_flag_as_a_value_not_from_the_environment(monkeypatch):
    headers = {"X-MS-CLIENT-PRINCIPAL": encode(SAMPLE)}
    monkeypatch.setenv("GATEKEEPER_TRUST_EASYAUTH_HEADER", "true")  # ignored: the caller passes the value
    with pytest.raises(GatekeeperError) as info:
        identify_caller(headers, None, trust_easyauth=False)  # falls back to a bearer token, which is absent
    assert status_of(info.value) == 401
    validator = _Validator()
    caller = identify_caller(headers, validator, trust_easyauth=True)
    assert caller.oid == OID and caller.auth == "easyauth" and validator.tokens == []
    monkeypatch.delenv("GATEKEEPER_TRUST_EASYAUTH_HEADER")
    assert identify_caller(headers, None, trust_easyauth=True).oid == OID


def test_trusted_but_malformed_header_is_refused():
    with pytest.raises(GatekeeperError) as info:
        easyauth_principal({"X-MS-CLIENT-PRINCIPAL": "%%%"}, trusted=True)
    assert status_of(info.value) == 401


def test_check_tenant_and_require_role():
    p = principal_from_client_principal_header(encode(SAMPLE))
    assert check_tenant(p, TID.upper()) is p
    assert check_tenant(p, None) is p
    with pytest.raises(GatekeeperError) as info:
        check_tenant(p, "00000000-0000-4000-8000-000000000000")
    assert (status_of(info.value), info.value.code) == (403, "wrong-tenant")
    assert require_role(p, AUDITOR_ROLE) is p
    with pytest.raises(GatekeeperError) as info:
        require_role(p, "Gatekeeper.Admin")
    assert (status_of(info.value), info.value.code) == (403, "forbidden")


def test_principal_is_frozen_and_function_key_principal_has_no_roles():
    p = function_key_principal()
    assert p.auth == "function-key" and p.roles == frozenset() and p.app_only
    with pytest.raises(ValueError):
        p.oid = "someone-else"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Principal(oid="", tid=TID, auth="bearer")
