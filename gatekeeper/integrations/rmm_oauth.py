"""The OAuth access token both RMM vendors hand out, and one API call with it (gatekeeper.integrations.rmm).

NinjaOne: client credentials; Datto RMM: the API key and secret key as a password grant. `OAuthApi` fetches a
token on first use, caches it until a minute before it expires, drops it when the API answers 401 and asks
once more, and never puts it in a result, a log line or a repr. Calls go through the project's retry helper
(bounded attempts, backoff, `Retry-After` honoured, 429 and 5xx retried, other 4xx not) with bounded timeouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from gatekeeper import json_bounded
from gatekeeper.integrations.guarded_http import guarded_session
from gatekeeper.integrations.retry import HttpOutcome, RetryPolicy, describe, send_with_retry
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url
from gatekeeper.tenancy.rmm_settings import LOOPBACK, RmmSettings

TOKEN_MARGIN_SECONDS = 60.0
MAX_TOKEN_SECONDS = 7 * 24 * 3600.0
MAX_BODY = 1024 * 1024  # an RMM answer (token, device, alert) larger than this is not one we asked for


def _internal(api_url: str, allow_loopback_http: bool) -> str | None:
    """Why the tenant's secret may not go to `api_url` (an internal address), or None."""
    try:
        check_outbound_url(api_url, field="api_url", allow_loopback_http=allow_loopback_http)
    except OutboundUrlError as exc:
        return str(exc)
    return None


class TokenUnavailable(Exception):
    """The vendor's token endpoint refused or never answered (the outcome says which)."""

    def __init__(self, outcome: HttpOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


@dataclass
class _Token:
    value: str
    expires: float


class OAuthApi:
    """A vendor API reached with a cached OAuth access token. Subclasses say how to ask for the token."""

    vendor = "rmm"

    def __init__(
        self,
        settings: RmmSettings,
        secret: str,
        *,
        policy: RetryPolicy | None = None,
        allow_loopback_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._secret = secret
        self._policy = policy or RetryPolicy(max_attempts=4, initial_wait=1.0, max_wait=10.0, read_timeout=15.0)
        self._clock = clock
        self._session = session or guarded_session(allow_loopback_http)  # the tenant names the API host
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self.token_requests = 0
        host = (urlsplit(settings.api_url).hostname or "").lower()
        self._refused = (
            _internal(settings.api_url, allow_loopback_http)
            if settings.api_url.startswith("https://") or (allow_loopback_http and host in LOOPBACK)
            else "api_url: plain http is only allowed to a loopback host in development"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_url={self.settings.api_url!r}, token=***)"

    # what subclasses supply
    def token_request(self) -> requests.PreparedRequest:
        raise NotImplementedError

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a detail line."""
        token = self._token.value if self._token else ""
        return tuple(s for s in (self._secret, token, self.settings.client_id) if s)

    # the token
    def _access_token(self) -> str:
        with self._lock:
            token = self._token
            if token is not None and self._clock() < token.expires:
                return token.value
            prepared = self.token_request()
            self.token_requests += 1
            outcome = send_with_retry(
                lambda: self._session.send(prepared, timeout=self._policy.timeout, allow_redirects=False, stream=True),
                self._policy,
                label=f"{self.vendor} token",
                max_body=MAX_BODY,
            )
            value, lifetime = self._read_token(outcome)
            if value is None:
                detail = (
                    f"{self.vendor} token: the answer carried no usable access_token"
                    if outcome.ok
                    else describe(outcome, f"{self.vendor} token", self.secrets)
                )
                raise TokenUnavailable(outcome, detail)
            self._token = _Token(value, self._clock() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS))
            return value

    @staticmethod
    def _read_token(outcome: HttpOutcome) -> tuple[str | None, float]:
        if not outcome.ok or outcome.response is None or outcome.body is None:
            return None, 0.0
        try:
            body = json_bounded.loads(outcome.body)  # bounded: a vendor answer is input too
        except ValueError:
            return None, 0.0
        token = body.get("access_token") if isinstance(body, dict) else None
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return None, 0.0
        number = lifetime if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) else 3600
        seconds = float(min(max(number, 0), MAX_TOKEN_SECONDS))  # capped before float(): JSON numbers are unbounded
        return token, seconds if seconds == seconds else 0.0  # NaN: use once

    def _forget_token(self, value: str) -> None:
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None

    # one API call
    def call(self, method: str, path: str, *, json_body: Any = None, what: str) -> tuple[HttpOutcome | None, str]:
        """Send one API request with the token (retried); a 401 renews the token once. Returns the outcome and
        a redacted detail line; (None, detail) when no token could be had or the URL is refused."""
        if self._refused:
            return None, self._refused
        for renewed in (False, True):
            try:
                token = self._access_token()
            except TokenUnavailable as exc:  # never the token call's 200 standing in for the API call's answer
                return (None if exc.outcome.ok else exc.outcome), exc.detail
            url = self.settings.api_url + path

            def attempt(token: str = token, url: str = url) -> requests.Response:
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
                return self._session.request(
                    method,
                    url,
                    json=json_body,
                    headers=headers,
                    timeout=self._policy.timeout,
                    allow_redirects=False,
                    stream=True,  # read bounded (MAX_BODY), never the whole answer first
                )

            outcome = send_with_retry(attempt, self._policy, label=f"{self.vendor} {what}", max_body=MAX_BODY)
            if outcome.status_code == 401 and not renewed:
                self._forget_token(token)
                continue
            return outcome, describe(outcome, f"{self.vendor} {what}", self.secrets)
        raise AssertionError("unreachable")  # pragma: no cover
