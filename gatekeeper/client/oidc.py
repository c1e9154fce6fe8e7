"""A GitHub Actions OIDC token, fetched for Gatekeeper's audience and renewed before it expires.

A job with `permissions: id-token: write` gets `ACTIONS_ID_TOKEN_REQUEST_URL` and `..._TOKEN`; a GET of that
URL with `&audience=<aud>` and `Authorization: bearer <request token>` answers `{"value": "<jwt>"}`. The JWT
lives for minutes, shorter than a person takes to approve, so the provider is called before every request and
fetches a new token when the cached one has under a minute left (the `exp` claim is read, not verified: the
server verifies it). No secret is stored in the repository or the pipeline.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from gatekeeper.client.errors import InvalidRequest, Unavailable

RENEW_BEFORE_SECONDS = 60
MAX_TOKEN_CHARS = 16_384


def audience_url(request_url: str, audience: str) -> str:
    """The request URL with `audience` set (it already carries `api-version`)."""
    parts = urlsplit(request_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "audience"]
    query.append(("audience", audience))
    return urlunsplit(parts._replace(query=urlencode(query)))


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, unverified (for caching only), or None."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


class GitHubOidcTokenProvider:
    """`provider()` -> a GitHub OIDC token for `audience`, cached until a minute before it expires."""

    def __init__(
        self,
        request_url: str,
        request_token: str,
        audience: str,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not request_url or not request_token:
            raise InvalidRequest(
                "credentials: no GitHub OIDC token available; give the job `permissions: id-token: write`",
                field="credentials",
            )
        if not audience:
            raise InvalidRequest("audience: the OIDC audience is required", field="audience")
        self._url = audience_url(request_url, audience)
        self._request_token = request_token
        self._session = session or requests.Session()
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return "GitHubOidcTokenProvider(***)"

    def __call__(self) -> str:
        if self._token is None or self._clock() >= self._expires - RENEW_BEFORE_SECONDS:
            self._token = self._fetch()
            self._expires = token_expiry(self._token) or self._clock() + 2 * RENEW_BEFORE_SECONDS
        return self._token

    def invalidate(self) -> None:
        self._token = None

    def _fetch(self) -> str:
        self.fetches += 1
        try:
            response = self._session.get(
                self._url,
                headers={"Authorization": f"bearer {self._request_token}", "Accept": "application/json"},
                timeout=(5, 15),
                allow_redirects=False,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unavailable(f"the GitHub OIDC token endpoint did not answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise Unavailable(f"the GitHub OIDC token endpoint answered HTTP {response.status_code}")
        try:
            value = response.json().get("value")
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_CHARS:
            raise Unavailable("the GitHub OIDC token endpoint answered without a token")
        return value
