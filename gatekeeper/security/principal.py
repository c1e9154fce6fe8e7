"""Who is calling: one `Principal` shape for bearer tokens, App Service authentication and function keys.

Routes decide on a `Principal` and never on raw claims, so the approvals and audit code does not care
whether identity came from a validated JWT or from the platform's `X-MS-CLIENT-PRINCIPAL` header.

The header is only meaningful behind App Service authentication ("Easy Auth"): the platform removes any
client-sent `X-MS-CLIENT-PRINCIPAL*` headers and sets its own after validating the session or token. On a
host without it (local `func start`, a misconfigured app) anyone can send the header, so it is read only
when the app setting GATEKEEPER_TRUST_EASYAUTH_HEADER is true (the Bicep sets it with authentication); the
caller passes that value (`trusted`), read once with the other settings.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gatekeeper import json_bounded
from gatekeeper.errors import Forbidden, unauthenticated

# teams: a Bot Connector-signed card action; slack: a signed Slack interaction, the person from the identity map
AuthKind = Literal["bearer", "easyauth", "function-key", "teams", "slack"]

AUDITOR_ROLE = "Gatekeeper.Auditor"
CLIENT_PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
GUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_HEADER_CHARS = 64 * 1024

# Claim types after App Service's default claim mapping (the short JWT names are accepted too).
OID_TYPES = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
TID_TYPES = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
SUB_TYPES = ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", "sub")
UPN_TYPES = ("preferred_username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn")
SCOPE_TYPES = ("http://schemas.microsoft.com/identity/claims/scope", "scp")
ROLE_TYPES = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
GROUP_TYPES = ("groups", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups")
FUNCTION_KEY_OID = "function-key"


class Principal(BaseModel):
    """An authenticated caller. `oid` is the stable identity used for separation of duties."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    oid: str = Field(min_length=1, max_length=128)
    tid: str = Field(max_length=128)
    name: str | None = None
    upn: str | None = None
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    auth: AuthKind
    app_only: bool = False  # a service principal (client credentials), not a person
    groups_overage: bool = False  # too many groups for the token: ask Microsoft Graph for membership

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def in_any_group(self, group_ids: Iterable[str]) -> bool:
        return not self.groups.isdisjoint(g.lower() for g in group_ids)


def function_key_principal() -> Principal:
    """The caller proved only that it knows a function key: no person, no tenant, no roles."""
    return Principal(oid=FUNCTION_KEY_OID, tid="", auth="function-key", app_only=True)


def wrong_tenant() -> Forbidden:
    """A valid identity from another Entra ID tenant than the gate's (forbidden, never unauthenticated:
    retrying won't help)."""
    return Forbidden(
        "The identity belongs to a different Microsoft Entra ID tenant than this gate.",
        code="wrong-tenant",
        title="Wrong tenant",
    )


def check_tenant(principal: Principal, expected_tenant_id: str | None) -> Principal:
    """Refuse a principal whose `tid` is not the gate's Entra tenant; None means any tenant."""
    if expected_tenant_id is not None and principal.tid != expected_tenant_id.strip().lower():
        raise wrong_tenant()
    return principal


def require_role(principal: Principal, role: str) -> Principal:
    """Refuse a caller without an Entra ID app role (e.g. `Gatekeeper.Auditor` for the audit export)."""
    if not principal.has_role(role):
        raise Forbidden(f"The caller does not hold the app role '{role}'.")
    return principal


def is_app_only(claims: Mapping[str, Any], sub: Any, oid: str, has_scope: bool) -> bool:
    """Entra marks app tokens with the optional `idtyp` claim; without it, an app token has no
    delegated scope and its `sub` equals its `oid` (user tokens carry a pairwise `sub`)."""
    if claims.get("idtyp") is not None:
        return claims.get("idtyp") == "app"
    return not has_scope and sub == oid


class _Claim(BaseModel):
    model_config = ConfigDict(extra="ignore")
    typ: str
    val: str


class _ClientPrincipal(BaseModel):
    """The decoded header: {auth_typ, name_typ, role_typ, claims: [{typ, val}]}."""

    model_config = ConfigDict(extra="ignore")
    auth_typ: str
    name_typ: str | None = None
    role_typ: str | None = None
    claims: list[_Claim]


def _decode_header(value: str) -> _ClientPrincipal:
    text = value.strip()
    if not text or len(text) > MAX_HEADER_CHARS:
        raise unauthenticated("The X-MS-CLIENT-PRINCIPAL header is empty or too large.")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        data = json_bounded.loads(raw)
    except (binascii.Error, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise unauthenticated("The X-MS-CLIENT-PRINCIPAL header is not base64-encoded JSON.") from None
    try:
        return _ClientPrincipal.model_validate(data)
    except ValidationError:
        raise unauthenticated("The X-MS-CLIENT-PRINCIPAL header does not have the App Service shape.") from None


def principal_from_client_principal_header(value: str) -> Principal:
    """Decode App Service's `X-MS-CLIENT-PRINCIPAL` (base64 JSON) into a Principal; 401 if unusable.

    Call this only when the platform set the header (see `easyauth_principal`)."""
    payload = _decode_header(value)
    if payload.auth_typ.lower() != "aad":
        raise unauthenticated("The X-MS-CLIENT-PRINCIPAL header is not from Microsoft Entra ID.")
    by_type: dict[str, list[str]] = {}
    for claim in payload.claims:
        by_type.setdefault(claim.typ, []).append(claim.val)

    def first(types: Iterable[str]) -> str | None:
        return next((by_type[t][0] for t in types if by_type.get(t)), None)

    def every(types: Iterable[str]) -> frozenset[str]:
        return frozenset(v for t in dict.fromkeys(types) for v in by_type.get(t, []))

    oid, tid = (first(OID_TYPES) or "").lower(), (first(TID_TYPES) or "").lower()
    if not GUID_PATTERN.match(oid) or not GUID_PATTERN.match(tid):
        raise unauthenticated("The X-MS-CLIENT-PRINCIPAL header lacks a valid object id or tenant id claim.")
    role_types = (*ROLE_TYPES, payload.role_typ) if payload.role_typ else ROLE_TYPES
    upn = first(UPN_TYPES) or (first([payload.name_typ]) if payload.name_typ else None)
    flat = {t: v[0] for t, v in by_type.items()}
    return Principal(
        oid=oid,
        tid=tid,
        name=first(["name"]),
        upn=upn,
        groups=frozenset(g.lower() for g in every(GROUP_TYPES)),
        roles=every(role_types),
        auth="easyauth",
        app_only=is_app_only(flat, first(SUB_TYPES), oid, first(SCOPE_TYPES) is not None),
        groups_overage="hasgroups" in by_type or "groups" in (first(["_claim_names"]) or ""),
    )


def easyauth_principal(headers: Mapping[str, str], *, trusted: bool) -> Principal | None:
    """The platform-set principal, or None when the header is absent or not trusted on this host.

    `trusted` is the GATEKEEPER_TRUST_EASYAUTH_HEADER value the composition root read (Settings), passed by
    the trigger. An untrusted header is ignored rather than refused, so the route falls back to a bearer
    token."""
    if not trusted:
        return None
    wanted = CLIENT_PRINCIPAL_HEADER.lower()
    value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    if value is None:
        return None
    return principal_from_client_principal_header(value)
