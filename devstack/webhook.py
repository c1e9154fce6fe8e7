"""A local receiver for Gatekeeper's signed outbound webhooks: verifies the signature and records each
delivery."""

from __future__ import annotations

import json
from typing import Any

from devstack.server import LocalServer, Response, json_response
from gatekeeper.integrations.webhook import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_webhook_signature,
)


class LocalWebhookReceiver(LocalServer):
    """A CI's callback endpoint: verifies the Gatekeeper signature (401 when it does not verify)."""

    name = "local webhook receiver"

    def __init__(self, secret: bytes, *, tolerance: int = 300):
        super().__init__()
        self._secret = secret
        self.tolerance = tolerance
        self.deliveries: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"LocalWebhookReceiver(url={self.url if self._server else None!r})"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if method != "POST":
            return json_response(405, {"message": "POST only"})
        verified = verify_webhook_signature(
            self._secret,
            headers.get(TIMESTAMP_HEADER.lower(), ""),
            body,
            headers.get(SIGNATURE_HEADER.lower(), ""),
            self.tolerance,
        )
        if not verified:
            return json_response(401, {"message": "signature does not verify"})
        delivery = headers.get(DELIVERY_HEADER.lower(), "")
        with self._lock:
            duplicate = any(d["delivery_id"] == delivery for d in self.deliveries)
            self.deliveries.append(
                {
                    "path": path,
                    "event": headers.get(EVENT_HEADER.lower()),
                    "delivery_id": delivery,
                    "duplicate": duplicate,
                    "body": json.loads(body),
                }
            )
        return json_response(200, {"received": True, "duplicate": duplicate})

    def report(self) -> list[str]:
        with self._lock:
            return [
                f"CI webhook received {d['event']} (signature verified)"
                + (f": {d['body'].get('state')}" if d["body"].get("state") else "")
                for d in self.deliveries
            ]
