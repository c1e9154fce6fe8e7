"""A notifier that writes files instead of calling Graph: `GATEKEEPER_NOTIFY_MODE=outbox` (local development,
the demo, and deployments that collect notifications from a folder): one JSON file per notification.

Each file holds the notification and the exact Graph requests the Graph notifier would send (the Teams
activity notification per recipient and the fallback mail), so the demo shows what Teams would receive.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatekeeper.integrations.notify import (
    Delivery,
    Notification,
    NotificationResult,
    activity_notification_body,
    send_mail_body,
)
from gatekeeper.store.tables import validate_tenant_id


class OutboxNotifier:
    """Writes `<dir>/<tenant>/<utc time>-<kind>-<id>.json` and returns its path in the result."""

    def __init__(
        self, directory: str | os.PathLike[str], *, portal_url: str | None = None, teams_app_id: str | None = None
    ):
        self.directory = Path(directory)
        self._portal_url = portal_url
        self._teams_app_id = teams_app_id
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OutboxNotifier({str(self.directory)!r})"

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
        validate_tenant_id(tenant_id)  # the tenant id becomes a folder name
        web_url = notification.link or self._portal_url
        requests = []
        for recipient in notification.parsed_recipients():
            path = (
                f"/teams/{recipient.id}/sendActivityNotification"
                if recipient.kind == "group"
                else f"/users/{recipient.id}/teamwork/sendActivityNotification"
            )
            entry: dict[str, Any] = {"recipient": recipient.label}
            if web_url:
                entry["teams"] = {
                    "method": "POST",
                    "path": path,
                    "body": activity_notification_body(
                        notification, web_url, teams_app_id=self._teams_app_id, recipient=recipient
                    ),
                }
            entry["mail_fallback"] = {
                "method": "POST",
                "path": "/users/{sender}/sendMail",
                "body": send_mail_body(notification, f"<mail of {recipient.label}>", web_url),
            }
            requests.append(entry)
        now = datetime.now(UTC)
        record = {
            "tenant_id": tenant_id,
            "written_at": now.isoformat(),
            "notification": notification.model_dump(mode="json"),
            "graph_requests": requests,
        }
        folder = self.directory / tenant_id
        stem = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{re.sub('[^a-z_]', '', notification.kind)}-{uuid.uuid4().hex[:8]}"
        target = folder / f"{stem}.json"
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = target.with_suffix(".tmp")
            temporary.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
            temporary.replace(target)  # readers never see half a file
        deliveries = tuple(
            Delivery(recipient=r, channel="outbox", ok=True, detail=str(target)) for r in notification.recipients
        )
        return NotificationResult(ok=True, deliveries=deliveries, path=str(target), detail=f"written to {target}")

    def read_all(self, tenant_id: str | None = None) -> list[dict]:
        """Every notification in the outbox (oldest first), for the demo and tests."""
        root = self.directory / tenant_id if tenant_id else self.directory
        if not root.exists():
            return []
        return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(root.rglob("*.json"))]
