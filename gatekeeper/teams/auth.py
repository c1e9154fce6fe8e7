"""Who may post activities to `/api/messages`: the Bot Connector, proved by its token.

Azure Bot Service signs every activity it posts with a JWT whose audience is the bot's app id. Which issuer
signs depends on the bot's identity type; our bot is `UserAssignedMSI` (single tenant), so both arrive:

* **Bot Framework tokens**: issuer `https://api.botframework.com` (the issuer of the OpenID metadata at
  GATEKEEPER_BOT_OPENID_METADATA), keys from that metadata's JWKS, each listing the channels it may speak for
  (`endorsements`, which must include `msteams`), and a `serviceurl` claim that must name the activity's
  `serviceUrl`, so a token taken from one activity cannot send the bot's replies (and its outbound token)
  elsewhere.
* **Entra ID tokens**: issuer `{GATEKEEPER_ENTRA_AUTHORITY_HOST}/{tenant}/v2.0` or v1
  `https://sts.windows.net/{tenant}/`, where the tenant is the bot's own (GATEKEEPER_BOT_TENANT_ID) or one of
  Microsoft's first-party service tenants; keys from that tenant's `/discovery/v2.0/keys` on the authority
  host (through `EntraTokenValidator`'s per-tenant key cache); the `tid` claim must be the issuer's tenant,
  so a token of an allow-listed first-party issuer cannot speak for another tenant. Any other tenant is
  refused before a key is fetched, so nobody can make us call out for an arbitrary tenant. Endorsements do
  not exist in Entra key sets and are not asked for. The `serviceurl` claim, when present, must match as
  above. When absent (Entra-issued tokens need not carry it) the token is accepted, as the Agents SDK does
  (`_http_adapter_base._validate_service_url` compares only a claim that is there), but only when the SDK
  will treat it as a call from another app (`is_agent_call`): its reply then carries a token scoped to that
  caller, never the bot's Bot Framework token, so an unchecked `serviceUrl` cannot collect a token worth
  stealing. Without a caller the SDK would send the Bot Framework token there, so such a token is refused.

Both: RS256 only, audience the bot's app id, lifetime with 5 minutes leeway (the SDK's), `exp` and `nbf`
required. This is the rule of the Agents SDK 1.9.0 `JwtTokenValidator` with `VALIDATE_ISSUER` on and
`TENANT_ID` the bot's tenant (`authorization/_entra_issuers.py`, `jwt/jwt_token_validator.py`), restated
here, with these differences, each stricter: `tid` is required on Entra tokens (the SDK skips the binding
without it; every Entra access token carries it), keys come from the issuing tenant's key set (the SDK reads
the bot tenant's for every Entra issuer; Entra publishes the same platform keys under each), an unset bot
tenant accepts only the first-party tenants (the SDK then accepts any tenant), an Entra token without
`serviceurl` must name its caller, and Bot Framework tokens need an endorsement for `msteams` and a
`serviceurl`.

Why not the SDK's `JwtTokenValidator` itself: in 1.9.0 it fetches Bot Framework keys from a fixed URL
(`login.botframework.com`) and Entra keys from `login.microsoftonline.com`, which no public setting
changes, so it cannot be pointed at the OpenID metadata and authority host this app is configured with
(a sovereign cloud, or the local issuers in tests), and it does not check endorsements. The verified claims
are handed to the SDK as its own `ClaimsIdentity` (`gatekeeper.teams.bot`), so everything after
authentication is the SDK's.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.error import URLError

import jwt

from gatekeeper.errors import DependencyUnavailable
from gatekeeper.security.entra import EntraTokenValidator, TokenWording, refused, unverified_token, verified_claims

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
TEAMS_CHANNEL = "msteams"
REQUIRED_CLAIMS = ("iss", "aud", "exp", "nbf", "serviceurl")
ENTRA_REQUIRED_CLAIMS = ("iss", "aud", "exp", "nbf", "tid")
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

# Microsoft's first-party token issuer tenants that Azure Bot Service and Teams sign from, always trusted:
# restated from the Agents SDK 1.9.0, microsoft_agents/hosting/core/authorization/_entra_issuers.py
# (WELL_KNOWN_PUBLIC_TENANT_IDS, WELL_KNOWN_GOV_TENANT_ID; a private module, so not imported;
# tests/unit/test_bot_token_issuers.py fails if the SDK's lists drift from these).
FIRST_PARTY_TENANTS = (
    "d6d49420-f39b-4df7-a1dc-d59a935871db",
    "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
    "69e9b82d-4842-4902-8d1e-abc5b98a55e8",
)
GOV_FIRST_PARTY_TENANTS = ("cab8a31a-1906-4287-a0d8-4eef66b95f6e",)
GOV_AUTHORITY_HOST = "login.microsoftonline.us"
# AuthenticationConstants.VALID_TOKEN_ISSUER_URL_TEMPLATE_V1 (the cloud-agnostic v1 issuer); the v2 issuer is
# `{authority host}/{tenant}/v2.0` (VALID_TOKEN_ISSUER_URL_TEMPLATE_V2 on the public authority host).
ENTRA_V1_ISSUER = "https://sts.windows.net/{tenant}/"
_GUID = r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
_V1_ISSUER = re.compile(rf"^(?i:https://sts\.windows\.net/){_GUID}/$")  # host case-blind, as the SDK
MAX_TOKEN_CHARS = 8 * 1024
MAX_METADATA_BYTES = 256 * 1024
LEEWAY_SECONDS = 300
# The Bot Connector's tokens are refused in the bot's words; any other failure reads as a bad signature.
BOT_TOKEN_WORDING = TokenWording(
    audience="The bearer token was issued for another bot.",
    issuer="The bearer token was not issued by the Bot Framework.",
    missing_claim="The bearer token lacks the claim '{claim}'.",
    invalid=("The bearer token's signature is invalid.", "signature"),
)


def keys_unavailable() -> DependencyUnavailable:
    return DependencyUnavailable(
        "The Bot Framework's signing keys could not be fetched; retry later.",
        code="identity-provider-unavailable",
        title="Identity provider unavailable",
    )


def _fetch_json(url: str, timeout: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - configured https URL
            raw = answer.read(MAX_METADATA_BYTES + 1)
    except (URLError, OSError, ValueError):
        raise keys_unavailable() from None
    if len(raw) > MAX_METADATA_BYTES:
        raise keys_unavailable()
    try:
        document = json.loads(raw)
    except ValueError:
        raise keys_unavailable() from None
    if not isinstance(document, dict):
        raise keys_unavailable()
    return document


def first_party_tenants(authority_host: str) -> tuple[str, ...]:
    """The Microsoft service tenants trusted for the cloud of `authority_host` (US Government or public), as
    the SDK's `well_known_first_party_issuers` chooses them."""
    return GOV_FIRST_PARTY_TENANTS if GOV_AUTHORITY_HOST in authority_host.lower() else FIRST_PARTY_TENANTS


class BotTokenValidator:
    """Validates the Bot Connector's tokens: Bot Framework-issued against the OpenID metadata at
    `metadata_url`, Entra-issued against the key set of the issuing tenant at `authority_host` (the bot's
    tenant `tenant_id` or a first-party tenant). Thread-safe; Bot Framework keys are cached for
    `cache_seconds` and fetched again (at most every `cooldown_seconds`) when a token names a key id not in
    the cache, so a key rotation needs no restart; Entra keys are cached per tenant the same way."""

    def __init__(
        self,
        app_id: str | None,
        metadata_url: str,
        *,
        tenant_id: str | None = None,
        allowed_callers: Iterable[str] = (),
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        channel: str = TEAMS_CHANNEL,
        cache_seconds: float = 24 * 3600,
        cooldown_seconds: float = 60,
        timeout_seconds: float = 5,
        fetch: Callable[[str, float], dict[str, Any]] = _fetch_json,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = (app_id or "").strip() or None
        self.metadata_url = metadata_url
        self.channel = channel
        self.authority_host = authority_host.rstrip("/")
        bot_tenant = (tenant_id or "").strip().lower()
        self.bot_tenant = bot_tenant or None
        # Entra issues app-only tokens for the bot's app id to ANY app of the bot's tenant that has a
        # credential, so the bot's own tenant counts only for calling apps named here (GATEKEEPER_BOT_ALLOWED_
        # CALLERS); Microsoft's service tenants issue only to Microsoft's services.
        self.allowed_callers = frozenset(c.strip().lower() for c in allowed_callers if c.strip())
        self.entra_tenants = frozenset(first_party_tenants(self.authority_host)) | (
            {bot_tenant} if bot_tenant else set()
        )
        self._first_party = frozenset(first_party_tenants(self.authority_host))
        self._v2_issuer = re.compile(rf"^(?i:{re.escape(self.authority_host)}/){_GUID}/v2\.0$")
        self._entra = EntraTokenValidator(  # only its per-tenant key sets are used; claims are checked here
            self.app_id or "no-bot",
            authority_host=self.authority_host,
            allowed_tenants=self.entra_tenants.__contains__,
            jwks_cache_seconds=cache_seconds,
            refresh_cooldown_seconds=cooldown_seconds,
            http_timeout_seconds=timeout_seconds,
        )
        self._cache_seconds = cache_seconds
        self._cooldown = cooldown_seconds
        self._timeout = timeout_seconds
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._issuer = BOT_FRAMEWORK_ISSUER
        self._fetched_at = float("-inf")

    def _refresh(self) -> None:
        metadata = self._fetch(self.metadata_url, self._timeout)
        jwks_uri, issuer = metadata.get("jwks_uri"), metadata.get("issuer")
        if not isinstance(jwks_uri, str) or not isinstance(issuer, str):
            raise keys_unavailable()
        keys = self._fetch(jwks_uri, self._timeout).get("keys")
        if not isinstance(keys, list):
            raise keys_unavailable()
        self._keys = {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
        self._issuer = issuer
        self._fetched_at = self._clock()

    def _key(self, kid: str) -> tuple[dict[str, Any], str]:
        with self._lock:
            now = self._clock()
            stale = now - self._fetched_at > self._cache_seconds
            if stale or (kid not in self._keys and now - self._fetched_at > self._cooldown):
                self._refresh()
            key = self._keys.get(kid)
            if key is None:
                raise refused("The token was signed with a key the Bot Framework does not publish.", "unknown-key")
            return key, self._issuer

    def entra_tenant(self, issuer: Any) -> str | None:
        """The tenant (lower case) of an Entra issuer, v2 on the configured authority host or v1; None for
        any other issuer (the Bot Framework's among them). Only GUID tenants: `tid` is always one."""
        if not isinstance(issuer, str):
            return None
        match = self._v2_issuer.match(issuer) or _V1_ISSUER.match(issuer)
        return match.group(1).lower() if match else None

    def validate(self, authorization: str | None, service_url: str | None) -> dict[str, Any]:
        """The verified claims of the `Authorization: Bearer` token on an activity posted with `service_url`;
        Unauthenticated (401) for anything else, DependencyUnavailable (503) when the keys cannot be had."""
        if self.app_id is None:
            raise refused("This app has no Teams bot (GATEKEEPER_BOT_APP_ID is not set).", "no-bot")
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise refused(
                "An 'Authorization: Bearer <token>' header from the Bot Connector is required.", "missing-token"
            )
        if len(token) > MAX_TOKEN_CHARS:
            raise refused("The bearer token is too large.", "malformed")
        kid, unverified = unverified_token(token, algorithm_detail="The bearer token is not signed with RS256.")
        issuer = unverified.get("iss")
        tenant = self.entra_tenant(issuer)
        if tenant is not None:
            return self._validate_entra(token, kid, str(issuer), tenant, service_url)
        return self._validate_bot_framework(token, kid, service_url)

    def _validate_bot_framework(self, token: str, kid: str, service_url: str | None) -> dict[str, Any]:
        raw_key, issuer = self._key(kid)
        endorsements = raw_key.get("endorsements")
        if isinstance(endorsements, list) and self.channel not in endorsements:
            raise refused(f"The signing key is not endorsed for the '{self.channel}' channel.", "endorsement")
        try:
            key = jwt.PyJWK(raw_key, algorithm="RS256").key
        except jwt.PyJWTError:
            raise refused("The signing key is not a usable RSA key.", "unknown-key") from None
        claims = self._decode(token, key, issuer, REQUIRED_CLAIMS)
        if not same_service_url(claims.get("serviceurl"), service_url):
            raise refused("The activity's serviceUrl is not the one its token was issued for.", "service-url")
        return claims

    def _validate_entra(
        self, token: str, kid: str, issuer: str, tenant: str, service_url: str | None
    ) -> dict[str, Any]:
        if tenant not in self.entra_tenants:  # before any key is fetched: no call out for a stranger's tenant
            raise refused("The bearer token was not issued by the bot's tenant or a Microsoft service.", "issuer")
        key = self._entra.signing_key(tenant, kid)
        claims = self._decode(token, key, issuer, ENTRA_REQUIRED_CLAIMS)
        tid = claims.get("tid")
        if not isinstance(tid, str) or tid.lower() != tenant:
            raise refused("The bearer token's tenant (tid) is not the tenant of its issuer.", "tenant")
        if (
            tenant == self.bot_tenant
            and tenant not in self._first_party
            and caller_of(claims) not in self.allowed_callers
        ):
            raise refused(
                "A token issued by the bot's own tenant is accepted only from the calling apps the deployment "
                "names (GATEKEEPER_BOT_ALLOWED_CALLERS): any app of that tenant can obtain one.",
                "caller",
            )
        if "serviceurl" in claims:
            if not same_service_url(claims["serviceurl"], service_url):
                raise refused("The activity's serviceUrl is not the one its token was issued for.", "service-url")
        elif not is_agent_call(claims):
            raise refused(
                "An Entra-issued token without a serviceurl claim must name its calling app (azp/appid).",
                "service-url",
            )
        return claims

    def _decode(self, token: str, key: Any, issuer: str, required: tuple[str, ...]) -> dict[str, Any]:
        return verified_claims(
            token,
            key=key,
            audience=self.app_id,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            required=required,
            wording=BOT_TOKEN_WORDING,
        )


def caller_of(claims: Mapping[str, Any]) -> str | None:
    """The calling app of a verified Entra token, lower case: `azp` (v2) or `appid` (v1)."""
    caller = claims.get("azp") if claims.get("ver") == "2.0" else claims.get("appid")
    return caller.strip().lower() if isinstance(caller, str) and caller.strip() else None


def is_agent_call(claims: Mapping[str, Any]) -> bool:
    """Whether the SDK answers this (verified) token as a call from another app: it then asks for its reply
    token with the scope `{caller}/.default`, a token only the caller can use, instead of the Bot Framework
    token. The SDK's `ClaimsIdentity.is_agent_claim`, restated: a `ver` claim, an audience that is not the
    Bot Framework, and a caller (`appid` in v1 tokens, `azp` in v2) other than the audience."""
    version, audience = claims.get("ver"), claims.get("aud")
    if not version or not isinstance(audience, str) or audience.lower() == BOT_FRAMEWORK_ISSUER:
        return False
    caller = claims.get("appid") if version == "1.0" else claims.get("azp") if version == "2.0" else None
    return isinstance(caller, str) and bool(caller) and caller != audience


def _normalised(url: str) -> str:
    return url.strip().rstrip("/").lower()


def same_service_url(claimed: Any, activity_url: str | None) -> bool:
    """The token's `serviceurl` and the activity's `serviceUrl` name the same endpoint (case and a trailing
    slash aside). Both must be present."""
    if not isinstance(claimed, str) or not isinstance(activity_url, str) or not claimed or not activity_url:
        return False
    return _normalised(claimed) == _normalised(activity_url)
