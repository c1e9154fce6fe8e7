"""Notifications to approvers and operators: the model, the `Notifier` interface and the pure payload builders.

Graph cannot post channel or chat messages as an app (outside migration), so approval requests go out as
Teams activity-feed notifications that link to the approval page, with mail as the fallback. The payloads
are built here, once, so the Graph notifier and the local outbox show exactly the same thing.
The `Notifier` port and its value models (`Notification`, `NotificationResult`, ...) live in `gatekeeper.ports`
and are re-exported here; several channels fan out behind it with `FanOutNotifier`. Implementations:
`GraphNotifier` (gatekeeper.integrations.graph_notify) and `OutboxNotifier` (gatekeeper.integrations.outbox).
They import this module, never the reverse, so there is no import cycle.
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Sequence
from typing import Any

from gatekeeper.ports import (
    GROUP_PREFIX,
    GUID,
    UPN,
    Channel,
    Delivery,
    GateChangedListener,
    GateClosedListener,
    Notification,
    NotificationDetail,
    NotificationKind,
    NotificationResult,
    Notifier,
    Recipient,
    parse_recipient,
)

# Activity types declared in the Teams app manifest (infra/teams), one per kind; each template is
# "{title}" preceded by a short reason, see docs/integrations.md.
ACTIVITY_TYPES: dict[str, str] = {
    "approval_request": "approvalRequired",
    "alert": "gateAlert",
    "info": "gateInfo",
    "human_task": "humanTaskAssigned",
}
log = logging.getLogger("gatekeeper.notify")
PREVIEW_CHARS = 150  # Teams shows the first 150 characters of previewText


class FanOutNotifier:
    """Several channels behind the one `Notifier` port: each channel gets the notification, and the result
    is ok only when every channel reached everyone. One channel's result passes through unchanged, so a
    deployment with one channel behaves exactly as that channel does. A channel that raises is a failed
    delivery in the result, not an exception: the other channels still run."""

    def __init__(self, channels: Sequence[Notifier]):
        if not channels:
            raise ValueError("FanOutNotifier: at least one channel is required")
        self._channels = tuple(channels)

    def __repr__(self) -> str:
        return f"FanOutNotifier({', '.join(repr(c) for c in self._channels)})"

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
        results = []
        for channel in self._channels:
            try:
                results.append(channel.notify(tenant_id, notification))
            except Exception as exc:  # one channel's bug must not silence the others
                results.append(NotificationResult(ok=False, detail=f"{type(channel).__name__}: {type(exc).__name__}"))
        if len(results) == 1:
            return results[0]
        return NotificationResult(
            ok=all(r.ok for r in results),
            deliveries=tuple(d for r in results for d in r.deliveries),
            path=next((r.path for r in results if r.path), None),
            detail="; ".join(r.detail for r in results if r.detail),
        )

    def gate_closed(self, tenant_id: str, instance_id: str) -> None:
        """Tell the channels that show a gate's live state (`GateClosedListener`) that it is closed."""
        for channel in self._channels:
            if isinstance(channel, GateClosedListener):
                try:
                    channel.gate_closed(tenant_id, instance_id)
                except Exception as exc:  # a channel's failure must not touch the gate's outcome
                    log.warning("%s: closing messages failed: %s", type(channel).__name__, type(exc).__name__)

    def gate_changed(self, tenant_id: str, instance_id: str) -> None:
        """Tell the channels that cannot refresh their messages themselves (`GateChangedListener`) that a
        vote was counted."""
        for channel in self._channels:
            if isinstance(channel, GateChangedListener):
                try:
                    channel.gate_changed(tenant_id, instance_id)
                except Exception as exc:  # a channel's failure must not touch the chain
                    log.warning("%s: updating messages failed: %s", type(channel).__name__, type(exc).__name__)


# --- pure payload builders (Graph JSON shapes) -------------------------------------------------------


def chain_id(notification: Notification) -> int | None:
    """Same gate and kind -> same chain, so a reminder replaces the earlier card instead of piling up."""
    if not notification.instance_id:
        return None
    digest = hashlib.sha256(f"{notification.instance_id}|{notification.kind}".encode()).digest()
    return int.from_bytes(digest[:7], "big")  # positive Int64


def activity_notification_body(
    notification: Notification,
    web_url: str,
    *,
    teams_app_id: str | None = None,
    recipient: Recipient | None = None,
) -> dict[str, Any]:
    """The `sendActivityNotification` body: a text topic whose webUrl is the approval page. With a group
    `recipient` it is the team-scoped form (`teamMembersNotificationRecipient`)."""
    body: dict[str, Any] = {
        "topic": {"source": "text", "value": notification.title[:100], "webUrl": web_url},
        "activityType": ACTIVITY_TYPES[notification.kind],
        "previewText": {"content": (notification.text or notification.title)[:PREVIEW_CHARS]},
        "templateParameters": [{"name": "title", "value": notification.title}],
    }
    chain = chain_id(notification)
    if chain is not None:
        body["chainId"] = chain
    if teams_app_id:
        body["teamsAppId"] = teams_app_id
    if recipient is not None and recipient.kind == "group":
        body["recipient"] = {"@odata.type": "#microsoft.graph.teamMembersNotificationRecipient", "teamId": recipient.id}
    return body


def mail_html(notification: Notification, web_url: str | None) -> str:
    """The mail body: title, text, the context lines (`details`, the same as the card and the page) as a
    table, and the link to the approval page. Everything from events is escaped; links are https only (the
    model refuses others) and quoted."""
    parts = [f"<p><strong>{html.escape(notification.title)}</strong></p>"]
    if notification.text:
        parts.append("<p>" + html.escape(notification.text).replace("\n", "<br>") + "</p>")
    if notification.details:
        rows = []
        for detail in notification.details:
            value = html.escape(detail.text)
            if detail.url:
                value = f'<a href="{html.escape(detail.url, quote=True)}">{value}</a>'
            rows.append(
                f'<tr><th align="left" valign="top" style="padding-right:12px">{html.escape(detail.label)}</th>'
                f"<td>{value}</td></tr>"
            )
        parts.append('<table role="presentation">' + "".join(rows) + "</table>")
    if web_url:
        label = "Review and decide" if notification.kind == "approval_request" else "Open in Gatekeeper"
        parts.append(f'<p><a href="{html.escape(web_url, quote=True)}">{label}</a></p>')
    if notification.instance_id:
        parts.append(f'<p style="color:#666">Gate {html.escape(notification.instance_id)}</p>')
    return "\n".join(parts)


MAIL_PREFIXES = {"approval_request": "Approval needed", "alert": "Alert", "info": "Info", "human_task": "Action needed"}


def mail_subject(notification: Notification) -> str:
    """`[Gatekeeper] <why>: <title>`. The reason is said here once (as the Teams activity type's template says
    it there), so titles carry the gate's own title only; a title that already starts with the same reason
    is not prefixed twice. One line: line breaks in a title would split the header."""
    prefix = MAIL_PREFIXES[notification.kind]
    title = " ".join(notification.title.split())
    if title.casefold().startswith(prefix.casefold() + ":"):
        title = title[len(prefix) + 1 :].lstrip()
    return f"[Gatekeeper] {prefix}: {title}"


def send_mail_body(notification: Notification, address: str, web_url: str | None) -> dict[str, Any]:
    """The `POST /users/{sender}/sendMail` body for one recipient."""
    return {
        "message": {
            "subject": mail_subject(notification),
            "body": {"contentType": "HTML", "content": mail_html(notification, web_url)},
            "toRecipients": [{"emailAddress": {"address": address}}],
        },
        "saveToSentItems": False,
    }


__all__ = [
    "ACTIVITY_TYPES",
    "GROUP_PREFIX",
    "GUID",
    "UPN",
    "Channel",
    "Delivery",
    "FanOutNotifier",
    "Notification",
    "NotificationDetail",
    "NotificationKind",
    "NotificationResult",
    "Notifier",
    "Recipient",
    "activity_notification_body",
    "parse_recipient",
    "send_mail_body",
]
