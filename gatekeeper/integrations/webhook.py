"""Signed webhooks to a generic CI's callback URL.

Signature: `X-Gatekeeper-Signature-256: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with
`X-Gatekeeper-Timestamp` (unix seconds) inside the signed material, so a captured delivery cannot be
replayed later, and `X-Gatekeeper-Delivery` (the same id on every retry, so receivers can dedupe). Each
retry is signed afresh with a new timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

import requests

from gatekeeper.events.model import WebhookCallback
from gatekeeper.integrations.guarded_http import guarded_session
from gatekeeper.integrations.results import CallbackResult, callback_result
from gatekeeper.integrations.retry import RetryPolicy, send_with_retry
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url, safe_url

log = logging.getLogger("gatekeeper.integrations.webhook")

SIGNATURE_HEADER = "X-Gatekeeper-Signature-256"
TIMESTAMP_HEADER = "X-Gatekeeper-Timestamp"
DELIVERY_HEADER = "X-Gatekeeper-Delivery"
EVENT_HEADER = "X-Gatekeeper-Event"
DEFAULT_TOLERANCE_SECONDS = 300

WebhookEvent = Literal["gate.completed", "gate.progress", "rollback.requested"]


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """The header value: `sha256=` + hex HMAC-SHA256 over `<timestamp>.<body>`."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """For receivers: True when `header` signs `<timestamp>.<body>` with `secret` and the timestamp is
    within `tolerance` seconds of now. Compared in constant time."""
    if not secret or not timestamp or not header or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign_webhook(secret, timestamp, body), header.strip())


def canonical_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


class WebhookSender:
    """Delivers signed JSON bodies with retries."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        allow_loopback_http: bool = False,
    ):
        self._session = session or guarded_session(allow_loopback_http)  # the event names the URL
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._allow_loopback_http = allow_loopback_http

    def send(
        self,
        url: str,
        secret: bytes,
        event: WebhookEvent,
        payload: dict[str, Any],
        *,
        action: Literal["complete", "progress"] = "complete",
        delivery_id: str | None = None,
    ) -> CallbackResult:
        try:
            check_outbound_url(url, field="callback.url", allow_loopback_http=self._allow_loopback_http)
        except OutboundUrlError as exc:
            return CallbackResult(ok=False, target="webhook", action=action, detail=str(exc))
        if not secret:
            return CallbackResult(
                ok=False,
                target="webhook",
                action=action,
                detail="webhook secret: the tenant has no webhook signing secret",
            )
        delivery = delivery_id or str(uuid.uuid4())
        body = canonical_body({**payload, "event": event, "delivery_id": delivery})

        def attempt() -> requests.Response:
            timestamp = str(int(self._clock()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "gatekeeper-webhook",
                SIGNATURE_HEADER: sign_webhook(secret, timestamp, body),
                TIMESTAMP_HEADER: timestamp,
                DELIVERY_HEADER: delivery,
                EVENT_HEADER: event,
            }
            return self._session.post(url, data=body, headers=headers, timeout=self._policy.timeout)

        outcome = send_with_retry(attempt, self._policy, label=f"webhook {event}")
        what = f"webhook {event} to {safe_url(url)} delivery {delivery}"
        secrets = [secret.decode("utf-8", "ignore")]
        return callback_result(outcome, what, secrets, target="webhook", action=action, log=log)


WebhookSecretResolver = Callable[[str], bytes]
"""tenant id -> that tenant's webhook signing secret (resolved from its secret reference)."""

WebhookAllowed = Callable[[str, str], bool]
"""(tenant id, url) -> whether the URL lies under the tenant's registered callback URL prefixes."""


class WebhookTarget:
    """The `PipelineTarget` for `webhook` handles: a signed `gate.completed` / `gate.progress` body to the
    handle's URL, re-checked at send time against the tenant's registered callback URL prefixes."""

    def __init__(
        self,
        sender: WebhookSender,
        secret: WebhookSecretResolver,
        *,
        allowed: WebhookAllowed | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._sender = sender
        self._secret = secret
        self._allowed = allowed
        self._clock = clock

    def complete(
        self, tenant_id: str, handle: WebhookCallback, approved: bool, comment: str, context: Mapping[str, Any]
    ) -> CallbackResult:
        payload = {
            "tenant_id": tenant_id,
            "approved": approved,
            "state": "approved" if approved else "rejected",
            "comment": comment,
            "context": dict(context),
            "sent_at": int(self._clock()),
        }
        return self._send(tenant_id, handle, "gate.completed", payload, "complete")

    def progress(self, tenant_id: str, handle: WebhookCallback, comment: str) -> CallbackResult:
        payload = {"tenant_id": tenant_id, "comment": comment, "sent_at": int(self._clock())}
        return self._send(tenant_id, handle, "gate.progress", payload, "progress")

    def _send(
        self,
        tenant_id: str,
        handle: WebhookCallback,
        event: WebhookEvent,
        payload: dict[str, Any],
        action: Literal["complete", "progress"],
    ) -> CallbackResult:
        if self._allowed is not None and not self._allowed(tenant_id, handle.url):
            return CallbackResult(
                ok=False,
                target="webhook",
                action=action,
                detail="callback.url: not under a callback URL prefix registered for the tenant; nothing was sent",
            )
        return self._sender.send(handle.url, self._secret(tenant_id), event, payload, action=action)
