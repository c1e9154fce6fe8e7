"""Notifications through Microsoft Graph with msgraph-sdk: Teams activity feed first, mail as fallback.

msgraph-sdk is async and activities are sync, so the notifier owns one event loop on a daemon thread and
runs each call there (one loop for the client's lifetime: httpx connections stay bound to it). Graph
throttling (429 + Retry-After) is honoured by the SDK's own retry handler (kiota `RetryHandler`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import TokenCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.key_value_pair import KeyValuePair
from msgraph.generated.models.message import Message
from msgraph.generated.models.recipient import Recipient as MailRecipient
from msgraph.generated.models.team_members_notification_recipient import TeamMembersNotificationRecipient
from msgraph.generated.models.teamwork_activity_topic import TeamworkActivityTopic
from msgraph.generated.models.teamwork_activity_topic_source import TeamworkActivityTopicSource
from msgraph.generated.teams.item.send_activity_notification.send_activity_notification_post_request_body import (
    SendActivityNotificationPostRequestBody as TeamActivityBody,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph.generated.users.item.teamwork.send_activity_notification.send_activity_notification_post_request_body import (  # noqa: E501
    SendActivityNotificationPostRequestBody as UserActivityBody,
)
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph_core import GraphClientFactory
from msgraph_core.authentication import AzureIdentityAuthenticationProvider

from gatekeeper.integrations.notify import (
    Delivery,
    Notification,
    NotificationResult,
    Recipient,
    activity_notification_body,
    send_mail_body,
)

log = logging.getLogger("gatekeeper.integrations.graph")

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
T = TypeVar("T")


def make_graph_client(
    credential: TokenCredential,
    base_url: str = "https://graph.microsoft.com/v1.0",
    *,
    scopes: list[str] | None = None,
    timeout: float = 30.0,
) -> tuple[GraphServiceClient, httpx.AsyncClient]:
    """A `GraphServiceClient` whose requests go to `base_url` (Graph, a national cloud, or a local stand-in)
    with the SDK's default middleware (retry on 429/503/504 honouring Retry-After). Returns the httpx
    client too, so its owner can close it."""
    host = urlsplit(base_url).hostname or ""
    if not scopes:
        scopes = [f"https://{host}/.default"] if urlsplit(base_url).scheme == "https" else [GRAPH_SCOPE]
    auth = AzureIdentityAuthenticationProvider(credential, scopes=scopes, allowed_hosts=[host])
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = base_url.rstrip("/")
    return GraphServiceClient(request_adapter=adapter), http


class LoopThread:
    """A private event loop on a daemon thread; sync callers submit coroutines and wait."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gatekeeper-graph", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # the caller has given up: stop the SDK's retries on the loop too
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


class GraphSession:
    """What every msgraph-sdk adapter here owns: a private event loop on a thread and, optionally, the httpx
    client it created; closing it closes both. Usable as a context manager."""

    def __init__(self, http_client: httpx.AsyncClient | None = None) -> None:
        self._http = http_client
        self._runner = LoopThread()

    def close(self) -> None:
        if self._http is not None:
            try:
                self._runner.run(self._http.aclose(), timeout=5)
            except Exception:
                log.debug("graph: closing the http client failed", exc_info=True)
        self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def graph_error_text(exc: BaseException) -> tuple[int | None, str]:
    """Status and a short message from a Graph error (ODataError carries `.error.code/.message`)."""
    if isinstance(exc, APIError):
        status = exc.response_status_code
        error = getattr(exc, "error", None)
        code = getattr(error, "code", None) or ""
        message = getattr(error, "message", None) or exc.primary_message or ""
        text = " ".join(part for part in (code, message[:200]) if part)
        return status, f"HTTP {status}" + (f" {text}" if text else "")
    return None, type(exc).__name__


class GraphNotifier(GraphSession):
    """Teams activity feed (`sendActivityNotification`) linking to the approval page; mail (`sendMail`
    from `mail_sender`) when the activity notification fails, e.g. the Teams app is not installed for
    the user (403/404). Groups are reached through their team's members."""

    def __init__(
        self,
        graph_client: GraphServiceClient,
        teams_app_id: str | None,
        mail_sender: str | None,
        *,
        portal_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 120.0,
    ):
        self._client = graph_client
        self._teams_app_id = teams_app_id or None
        self._mail_sender = mail_sender or None
        self._portal_url = portal_url or None
        self._timeout = timeout
        super().__init__(http_client)

    def __repr__(self) -> str:
        return f"GraphNotifier(teams_app_id={self._teams_app_id!r}, mail_sender={self._mail_sender!r})"

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
        try:
            deliveries = self._runner.run(self._notify_all(notification), timeout=self._timeout)
        except Exception as exc:  # a bug or a timeout: report, never raise into the orchestration
            log.error("graph notify for tenant %s failed: %s", tenant_id, type(exc).__name__)
            return NotificationResult(ok=False, detail=f"graph notify failed: {type(exc).__name__}")
        ok = all(d.ok for d in deliveries)
        failed = [d.recipient for d in deliveries if not d.ok]
        detail = "all recipients notified" if ok else f"not reached: {', '.join(failed)}"
        (log.info if ok else log.error)("graph notify %s for tenant %s: %s", notification.kind, tenant_id, detail)
        return NotificationResult(ok=ok, deliveries=tuple(deliveries), detail=detail)

    async def _notify_all(self, notification: Notification) -> list[Delivery]:
        return [await self._deliver(recipient, notification) for recipient in notification.parsed_recipients()]

    async def _deliver(self, recipient: Recipient, notification: Notification) -> Delivery:
        web_url = notification.link or self._portal_url
        teams_detail = "teams: no link to open"
        if web_url:
            try:
                await self._send_activity(recipient, notification, web_url)
                return Delivery(
                    recipient=recipient.label,
                    channel="teams",
                    ok=True,
                    status_code=204,
                    detail="teams activity notification sent",
                )
            except (APIError, httpx.HTTPError) as exc:
                _, text = graph_error_text(exc)
                teams_detail = f"teams: {text}"
                log.warning(
                    "graph: activity notification to %s failed (%s); falling back to mail", recipient.label, text
                )
        return await self._mail(recipient, notification, web_url, teams_detail)

    async def _send_activity(self, recipient: Recipient, notification: Notification, web_url: str) -> None:
        spec = activity_notification_body(notification, web_url, teams_app_id=self._teams_app_id, recipient=recipient)
        common: dict[str, Any] = {
            "topic": TeamworkActivityTopic(
                source=TeamworkActivityTopicSource.Text, value=spec["topic"]["value"], web_url=spec["topic"]["webUrl"]
            ),
            "activity_type": spec["activityType"],
            "preview_text": ItemBody(content=spec["previewText"]["content"]),
            "template_parameters": [KeyValuePair(name=p["name"], value=p["value"]) for p in spec["templateParameters"]],
            "chain_id": spec.get("chainId"),
            "teams_app_id": spec.get("teamsAppId"),
        }
        if recipient.kind == "group":
            body = TeamActivityBody(**common, recipient=TeamMembersNotificationRecipient(team_id=recipient.id))
            await self._client.teams.by_team_id(recipient.id).send_activity_notification.post(body)
        else:
            await self._client.users.by_user_id(recipient.id).teamwork.send_activity_notification.post(
                UserActivityBody(**common)
            )

    async def _address(self, recipient: Recipient) -> str | None:
        if recipient.kind == "user" and "@" in recipient.id:
            return recipient.id
        if recipient.kind == "user":
            user = await self._client.users.by_user_id(recipient.id).get(
                RequestConfiguration(
                    query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                        select=["mail", "userPrincipalName"]
                    )
                )
            )
            return (user.mail or user.user_principal_name) if user else None
        group = await self._client.groups.by_group_id(recipient.id).get(
            RequestConfiguration(
                query_parameters=GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(select=["mail"])
            )
        )
        return group.mail if group else None

    async def _mail(
        self, recipient: Recipient, notification: Notification, web_url: str | None, teams_detail: str
    ) -> Delivery:
        if not self._mail_sender:
            return Delivery(
                recipient=recipient.label,
                channel=None,
                ok=False,
                detail=f"{teams_detail}; mail: no GATEKEEPER_MAIL_SENDER configured",
            )
        try:
            address = await self._address(recipient)
            if not address:
                return Delivery(
                    recipient=recipient.label,
                    channel="mail",
                    ok=False,
                    detail=f"{teams_detail}; mail: the recipient has no mail address",
                )
            spec = send_mail_body(notification, address, web_url)["message"]
            message = Message(
                subject=spec["subject"],
                body=ItemBody(content_type=BodyType.Html, content=spec["body"]["content"]),
                to_recipients=[MailRecipient(email_address=EmailAddress(address=address))],
            )
            await self._client.users.by_user_id(self._mail_sender).send_mail.post(
                SendMailPostRequestBody(message=message, save_to_sent_items=False)
            )
        except (APIError, httpx.HTTPError) as exc:
            status, text = graph_error_text(exc)
            return Delivery(
                recipient=recipient.label,
                channel="mail",
                ok=False,
                status_code=status,
                detail=f"{teams_detail}; mail: {text}",
            )
        return Delivery(
            recipient=recipient.label,
            channel="mail",
            ok=True,
            status_code=202,
            detail=f"{teams_detail}; mail sent instead",
        )
