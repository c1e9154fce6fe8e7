"""Who may post activities to `/api/messages`: the Bot Connector, proved by a Bot Framework token.

The Bot Connector signs every activity it posts with a JWT (issuer `https://api.botframework.com`, audience
the bot's app id, a `serviceurl` claim naming where replies go) whose key is listed, with the channels it
may speak for (`endorsements`), in the Bot Framework's OpenID metadata. We check all of it: the signature
(RS256 only), a key endorsed for `msteams`, issuer, audience, lifetime (5 minutes leeway, as the Bot
Framework allows), and that the activity's `serviceUrl` is the one the token names, so a token taken from one
activity cannot send the bot's replies (and its outbound token) elsewhere.

Why not the Agents SDK's `JwtTokenValidator`: in 1.9.0 it fetches keys from a fixed URL
(`login.botframework.com`) that no public setting changes, so it cannot be pointed at the OpenID metadata
this app is configured with (GATEKEEPER_BOT_OPENID_METADATA: a sovereign cloud, or the local issuer in
tests), and it does not check endorsements. The verified claims are handed to the SDK as its own
`ClaimsIdentity` (`gatekeeper.teams.bot`), so everything after authentication is the SDK's.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.error import URLError

import jwt

from gatekeeper.errors import DependencyUnavailable, Unauthenticated, unauthenticated

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
TEAMS_CHANNEL = "msteams"
ACCEPTED_ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "nbf", "serviceurl")
MAX_TOKEN_CHARS = 8 * 1024
MAX_METADATA_BYTES = 256 * 1024
LEEWAY_SECONDS = 300


def refused(detail: str, reason: str) -> Unauthenticated:
    """401 with a stable reason; nothing from the token is echoed back."""
    problem = unauthenticated(detail)
    problem.extra["reason"] = reason
    return problem


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


class BotTokenValidator:
    """Validates the Bot Connector's tokens against the OpenID metadata at `metadata_url`. Thread-safe; the
    keys are cached for `cache_seconds` and fetched again (at most every `cooldown_seconds`) when a token
    names a key id not in the cache, so a key rotation needs no restart."""

    def __init__(
        self,
        app_id: str | None,
        metadata_url: str,
        *,
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
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise refused("The bearer token is not a well-formed JWT.", "malformed") from None
        if header.get("alg") not in ACCEPTED_ALGORITHMS:
            raise refused("The bearer token is not signed with RS256.", "algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise refused("The bearer token names no signing key (kid).", "unknown-key")
        raw_key, issuer = self._key(kid)
        endorsements = raw_key.get("endorsements")
        if isinstance(endorsements, list) and self.channel not in endorsements:
            raise refused(f"The signing key is not endorsed for the '{self.channel}' channel.", "endorsement")
        try:
            key = jwt.PyJWK(raw_key, algorithm="RS256").key
        except jwt.PyJWTError:
            raise refused("The signing key is not a usable RSA key.", "unknown-key") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(ACCEPTED_ALGORITHMS),
                audience=self.app_id,
                issuer=issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise refused("The bearer token has expired.", "expired") from None
        except jwt.ImmatureSignatureError:
            raise refused("The bearer token is not valid yet.", "not-yet-valid") from None
        except jwt.InvalidAudienceError:
            raise refused("The bearer token was issued for another bot.", "audience") from None
        except jwt.InvalidIssuerError:
            raise refused("The bearer token was not issued by the Bot Framework.", "issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise refused(f"The bearer token lacks the claim '{exc.claim}'.", "missing-claim") from None
        except jwt.PyJWTError:
            raise refused("The bearer token's signature is invalid.", "signature") from None
        if not same_service_url(claims.get("serviceurl"), service_url):
            raise refused("The activity's serviceUrl is not the one its token was issued for.", "service-url")
        return claims


def _normalised(url: str) -> str:
    return url.strip().rstrip("/").lower()


def same_service_url(claimed: Any, activity_url: str | None) -> bool:
    """The token's `serviceurl` and the activity's `serviceUrl` name the same endpoint (case and a trailing
    slash aside). Both must be present."""
    if not isinstance(claimed, str) or not isinstance(activity_url, str) or not claimed or not activity_url:
        return False
    return _normalised(claimed) == _normalised(activity_url)


def header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)
