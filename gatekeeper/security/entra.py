"""Validate Microsoft Entra ID bearer tokens with PyJWT against the signing tenant's published keys.

A managed service provider serves many Entra tenants, so the JWKS is chosen per token from its `tid`
(read unverified, shape-checked, and allowed by the caller's tenant registry) and cached per tenant. Then
the signature (RS256 only), issuer, audience, lifetime and required claims are verified, and only then is
`tid` compared with the gate's tenant: a forged token is a 401, a genuine one from elsewhere a 403.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError

import jwt
from jwt import PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError

from gatekeeper.errors import DependencyUnavailable, Unauthenticated, unauthenticated
from gatekeeper.security.principal import GUID_PATTERN, Principal, check_tenant, is_app_only

ACCEPTED_ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "nbf", "iat", "oid", "tid")
MAX_TOKEN_CHARS = 16 * 1024  # large group lists make tokens big; anything larger is not an Entra token
MAX_CACHED_TENANTS = 256


def refused(detail: str, reason: str) -> Unauthenticated:
    """401 with a stable machine-readable reason (RFC 6750 style) and nothing from the token echoed back."""
    problem = unauthenticated(detail)
    problem.extra["reason"] = reason
    return problem


@dataclass(frozen=True)
class TokenWording:
    """What the 401 of a refused token says where the token's issuer deserves its own words (the Bot
    Connector's tokens name the bot and the Bot Framework); the reasons (slugs) stay the same everywhere."""

    audience: str = "The bearer token was issued for another audience."
    issuer: str = "The bearer token's issuer is not accepted."
    missing_claim: str = "The bearer token lacks the required claim '{claim}'."
    invalid: tuple[str, str] = ("The bearer token is invalid.", "invalid")  # (detail, reason) of any other failure


def verified_claims(
    token: str,
    *,
    key: Any,
    audience: str | Iterable[str] | None,
    issuer: str | Sequence[str],
    leeway: float,
    required: Iterable[str],
    wording: TokenWording = TokenWording(),
) -> dict[str, Any]:
    """The claims of an RS256 token checked against key, audience, issuer, lifetime and required claims;
    every PyJWT failure is a 401 with its own reason, so all three validators (Entra, GitHub OIDC, the bot)
    refuse alike and no PyJWT message (which may quote the token) reaches the caller."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=list(ACCEPTED_ALGORITHMS),
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": list(required)},
        )
    except jwt.ExpiredSignatureError:
        raise refused("The bearer token has expired.", "expired") from None
    except jwt.ImmatureSignatureError:
        raise refused("The bearer token is not valid yet.", "not-yet-valid") from None
    except jwt.InvalidAudienceError:
        raise refused(wording.audience, "audience") from None
    except jwt.InvalidIssuerError:
        raise refused(wording.issuer, "issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise refused(wording.missing_claim.format(claim=exc.claim), "missing-claim") from None
    except jwt.InvalidSignatureError:
        raise refused("The bearer token's signature is invalid.", "signature") from None
    except jwt.PyJWTError:
        raise refused(*wording.invalid) from None
    return claims


def unverified_token(
    token: str, *, algorithm_detail: str = "The bearer token is not signed with an accepted algorithm (RS256)."
) -> tuple[str, dict[str, Any]]:
    """Before any key is fetched: the token's signing key id and its claims, NOT verified (they only pick the
    tenant or issuer whose keys then check the token), or a 401: not a JWT (`malformed`), not RS256
    (`algorithm`, in `algorithm_detail`'s words), no kid (`unknown-key`). Shared by the Entra and bot validators."""
    try:
        header = jwt.get_unverified_header(token)
        unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise refused("The bearer token is not a well-formed JWT.", "malformed") from None
    if header.get("alg") not in ACCEPTED_ALGORITHMS:
        raise refused(algorithm_detail, "algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise refused("The bearer token names no signing key (kid).", "unknown-key")
    return kid, unverified


def jwks_signing_key(
    client: PyJWKClient, kid: str, *, no_keys: str, unknown_key: str, unavailable: Callable[[], DependencyUnavailable]
) -> Any:
    """The RSA key `kid` from an issuer's JWKS. A 4xx from the key endpoint (`no_keys`) or a kid it does not
    list (`unknown_key`) is the token's fault: 401 `unknown-key`; any other failure to fetch is ours, retryable
    (`unavailable`, 503). Shared by the Entra and GitHub OIDC validators."""
    try:
        jwk = client.get_signing_key(kid)
    except PyJWKClientConnectionError as exc:
        cause = exc.__cause__
        if isinstance(cause, HTTPError) and 400 <= cause.code < 500:
            raise refused(no_keys, "unknown-key") from None
        raise unavailable() from None
    except PyJWKClientError:
        raise refused(unknown_key, "unknown-key") from None
    if jwk.key_type != "RSA":
        raise refused("The token was signed with a key of the wrong type.", "algorithm")
    return jwk.key


def identity_unavailable() -> DependencyUnavailable:
    """Our side could not reach Entra ID's key endpoint: retryable, not the caller's fault."""
    return DependencyUnavailable(
        "The signing keys of Microsoft Entra ID could not be fetched; retry later.",
        code="identity-provider-unavailable",
        title="Identity provider unavailable",
    )


def bearer_token(authorization_header: str | None) -> str:
    """The token from `Authorization: Bearer <token>`; 401 if absent or in another scheme."""
    if not authorization_header or not authorization_header.strip():
        raise refused("An 'Authorization: Bearer <token>' header is required.", "missing-token")
    parts = authorization_header.strip().split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise refused("The Authorization header must use the Bearer scheme with one token.", "malformed")
    return parts[1]


class EntraTokenValidator:
    """Validates Entra ID v2 access tokens (v1 issuer optional) and returns the caller as a Principal.

    `audience` is the API's client id and/or application ID URI. `allowed_tenants` should be the tenant
    registry's "is this Entra tenant one of ours?" check: tokens from other tenants are refused before any
    key is fetched, so a stranger cannot make us call out for arbitrary tenants. Thread-safe.
    """

    def __init__(
        self,
        audience: str | Iterable[str],
        authority_host: str = "https://login.microsoftonline.com",
        allowed_tenants: Callable[[str], bool] | None = None,
        jwks_cache_seconds: float = 3600,
        *,
        leeway_seconds: float = 60,
        accept_v1_issuer: bool = False,
        refresh_cooldown_seconds: float = 30,
        http_timeout_seconds: float = 10,
    ) -> None:
        self.audiences = [audience] if isinstance(audience, str) else list(audience)
        if not self.audiences or not all(self.audiences):
            raise ValueError("audience: at least one non-empty audience is required")
        self.authority_host = authority_host.rstrip("/")
        self.allowed_tenants = allowed_tenants
        self.jwks_cache_seconds = jwks_cache_seconds
        self.leeway_seconds = leeway_seconds
        self.accept_v1_issuer = accept_v1_issuer
        self.refresh_cooldown_seconds = refresh_cooldown_seconds
        self.http_timeout_seconds = http_timeout_seconds
        self._clients: OrderedDict[str, PyJWKClient] = OrderedDict()
        self._lock = threading.Lock()

    def jwks_uri(self, tid: str) -> str:
        return f"{self.authority_host}/{tid}/discovery/v2.0/keys"

    def issuers(self, tid: str) -> list[str]:
        accepted = [f"{self.authority_host}/{tid}/v2.0"]
        if self.accept_v1_issuer:
            accepted.append(f"https://sts.windows.net/{tid}/")
        return accepted

    def _client_for(self, tid: str) -> PyJWKClient:
        with self._lock:
            client = self._clients.get(tid)
            if client is None:
                client = PyJWKClient(
                    self.jwks_uri(tid),
                    cache_jwk_set=True,
                    lifespan=self.jwks_cache_seconds,
                    timeout=self.http_timeout_seconds,
                    cooldown_duration=self.refresh_cooldown_seconds,
                )
                self._clients[tid] = client
                while len(self._clients) > MAX_CACHED_TENANTS:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(tid)
            return client

    def signing_key(self, tid: str, kid: str) -> Any:
        """The RSA public key `kid` that tenant `tid` publishes at its JWKS (cached per tenant; fetched again
        for an unknown kid after the cooldown). Also used for the Entra-issued tokens of the Teams bot
        (`gatekeeper.teams.auth`), so both routes share one key cache design."""
        return jwks_signing_key(
            self._client_for(tid),
            kid,
            no_keys="The token's tenant publishes no signing keys.",
            unknown_key="The token was signed with a key its tenant does not publish.",
            unavailable=identity_unavailable,
        )

    def validate(self, token: str, expected_tenant_id: str | None = None) -> Principal:
        """The verified caller, or Unauthenticated (bad token), Forbidden `wrong-tenant`,
        DependencyUnavailable (keys unreachable)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise refused("The bearer token is missing or too large.", "malformed")
        kid, unverified = unverified_token(token)
        tid = unverified.get("tid")
        if not isinstance(tid, str) or not GUID_PATTERN.match(tid):
            raise refused("The bearer token lacks a valid tenant id (tid) claim.", "missing-claim")
        if self.allowed_tenants is not None and not self.allowed_tenants(tid):
            raise refused("The bearer token was not issued by an accepted tenant.", "tenant")

        key = self.signing_key(tid, kid)
        claims = verified_claims(
            token,
            key=key,
            audience=self.audiences,
            issuer=self.issuers(tid),
            leeway=self.leeway_seconds,
            required=REQUIRED_CLAIMS,
        )
        principal = principal_from_claims(claims)
        return check_tenant(principal, expected_tenant_id)


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Map verified Entra claims to a Principal; `oid` and `tid` must be GUIDs."""
    oid, tid = claims.get("oid"), claims.get("tid")
    if not isinstance(oid, str) or not GUID_PATTERN.match(oid):
        raise refused("The bearer token's object id (oid) claim is not valid.", "missing-claim")
    if not isinstance(tid, str) or not GUID_PATTERN.match(tid):
        raise refused("The bearer token's tenant id (tid) claim is not valid.", "missing-claim")

    def strings(name: str) -> frozenset[str]:
        value = claims.get(name) or []
        return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()

    names = claims.get("_claim_names")
    upn = claims.get("preferred_username") or claims.get("upn")
    return Principal(
        oid=oid,
        tid=tid,
        name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        upn=upn if isinstance(upn, str) else None,
        groups=frozenset(g.lower() for g in strings("groups")),
        roles=strings("roles"),
        auth="bearer",
        app_only=is_app_only(claims, claims.get("sub"), oid, claims.get("scp") is not None),
        groups_overage=bool(claims.get("hasgroups")) or (isinstance(names, dict) and "groups" in names),
    )
