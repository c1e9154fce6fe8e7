"""What the three PSA clients share: one bounded, retried HTTP call and the `TicketResult` it becomes.

Every call goes through the project's retry helper (`gatekeeper.integrations.retry`): connection errors,
timeouts, 429 and 5xx are retried with exponential backoff (a `Retry-After` is honoured, capped), other 4xx
are final. Timeouts are bounded (connect, read). Details are scrubbed of every credential the client holds
before they reach a result, a log line or the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from gatekeeper import json_bounded
from gatekeeper.addresses import is_local_host
from gatekeeper.integrations.guarded_http import guarded_session
from gatekeeper.integrations.retry import HttpOutcome, RetryPolicy, describe, redact, send_with_retry
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url
from gatekeeper.ports import PsaVendor, TicketOperation, TicketRef, TicketResult

MAX_BODY = 1024 * 1024  # a PSA answer larger than this is not one we asked for
_ID = re.compile(r"^[0-9]{1,12}$")
# A linked ticket of another client company in the MSP's PSA: never written to (the request named it).
OTHER_COMPANY = "not a ticket of the tenant's company; nothing is written to it"


class PsaConfigError(ValueError):
    """The tenant's PSA settings cannot be used as they are (a credential reference not set, http off the
    loopback). The message names the field, never a value."""


def base_url(url: str, allow_loopback_http: bool, field: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "http" and not (allow_loopback_http and is_local_host(parts.hostname or "")):
        raise PsaConfigError(f"{field}: http is allowed for local servers only; use https")
    try:  # the credentials never go to an internal address (metadata, private endpoints), as for every client
        check_outbound_url(url, field=field, allow_loopback_http=allow_loopback_http)
    except OutboundUrlError as exc:
        raise PsaConfigError(str(exc)) from None
    return url.rstrip("/")


class PsaHttp:
    """One vendor's HTTP: a session, the retry policy, the secrets to scrub."""

    def __init__(
        self,
        vendor: PsaVendor,
        policy: RetryPolicy,
        secrets: tuple[str, ...],
        session: Any = None,
        *,
        allow_loopback_http: bool = False,
    ):
        self.vendor = vendor
        self.policy = policy
        self._secrets = secrets
        # the tenant names the PSA host: a name resolving to an internal address is refused on connect
        self._session = session or guarded_session(allow_loopback_http)

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Callable[[], Mapping[str, str]],
        operation: str,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> HttpOutcome:
        """One request, retried; `headers` is called per attempt (a refreshed token)."""

        def attempt() -> requests.Response:
            return self._session.request(
                method,
                url,
                headers=dict(headers()),
                json=json,
                params=params,
                data=data,
                timeout=self.policy.timeout,
                allow_redirects=False,
                stream=True,  # read bounded (MAX_BODY), never the whole answer first
            )

        return send_with_retry(attempt, self.policy, label=f"{self.vendor} {operation}", max_body=MAX_BODY)

    def result(
        self,
        operation: TicketOperation,
        outcome: HttpOutcome,
        what: str,
        ref: TicketRef | None = None,
    ) -> TicketResult:
        return TicketResult(
            ok=outcome.ok,
            operation=operation,
            vendor=self.vendor,
            ref=ref,
            status_code=outcome.status_code,
            attempts=outcome.attempts,
            detail=describe(outcome, what, self._secrets)[:500],
        )

    def failed(self, operation: TicketOperation, detail: str, ref: TicketRef | None = None) -> TicketResult:
        return TicketResult(
            ok=False, operation=operation, vendor=self.vendor, ref=ref, detail=redact(detail, self._secrets)[:500]
        )

    def skipped(self, operation: TicketOperation, detail: str, ref: TicketRef | None) -> TicketResult:
        return TicketResult(ok=True, skipped=True, operation=operation, vendor=self.vendor, ref=ref, detail=detail)


def body_of(outcome: HttpOutcome) -> Any:
    """The JSON answer of a successful call, or None (bounded: an answer over MAX_BODY was never read whole,
    and its call failed naming the bound)."""
    body = outcome.body
    if outcome.response is None or not outcome.ok or body is None or len(body) > MAX_BODY:
        return None
    try:
        return json_bounded.loads(body)  # depth and number bounds: a vendor answer is input too
    except ValueError:
        return None


def ticket_id(value: Any) -> str | None:
    """A vendor ticket id (a positive integer in all three PSAs) as text, or None."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value)
    return text if _ID.match(text) and int(text) > 0 else None
