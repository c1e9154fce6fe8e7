"""Approval cards sent by the bot: each approver gets the card in a 1:1 chat when a stage opens, and every
card turns into the read-only summary when the gate is decided or expires.

A `Notifier` channel beside the Graph one (the activity feed stays the nudge, mail the fallback). For each
approver named by Entra object id: create (or find) the 1:1 conversation through the Bot Connector
(`POST {serviceUrl}/v3/conversations` with the user's object id and tenant, the bot as sender); when Teams
answers 403 because the bot's app is not installed for the user, install it through Graph
(`POST /users/{id}/teamwork/installedApps`, the app found in the tenant catalog by its manifest id,
GATEKEEPER_TEAMS_APP_ID) and try once more; send the card; record the conversation id, service URL and
activity id per (gate, approver) in the tenant's Gates table, sealed, so the card can be updated later
(`PUT /v3/conversations/{id}/activities/{activityId}`). Groups and UPN-only approvers get no card (a bot
chat needs an object id); the activity feed and mail still reach them.

Connector calls go through the Agents SDK's `ConnectorClient` with the bot's own token (the app's credential:
the managed identity in Azure). Failures are returned per recipient, never raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper.gates.store import GateStore
from gatekeeper.gates.view import ApprovalView, build_view
from gatekeeper.ports import Delivery, Notification, NotificationResult
from gatekeeper.security.principal import GUID_PATTERN
from gatekeeper.security.requester import DirectoryUnavailable, UserDirectory
from gatekeeper.store.repository import TenantRepository, check_key
from gatekeeper.store.tables import StorageAccount, TablePurpose
from gatekeeper.teams.cards import CARD_CONTENT_TYPE, approval_card, follow_up_card

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from gatekeeper.store.envelope import EnvelopeCipher

log = logging.getLogger("gatekeeper.teams")

BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
CARD_ROW_PREFIX = "card|"


@dataclass(frozen=True)
class SentCard:
    """Where one approver's card of one gate is, so it can be updated."""

    user: str
    conversation_id: str
    service_url: str
    activity_id: str


class CardRepository(TenantRepository):
    """Card locations in the tenant's Gates table (partition: the gate; row: `card|<object id>`), sealed:
    they say who was asked where."""

    purpose = TablePurpose.GATES
    sealed_properties = frozenset({"card"})


class CardStore:
    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher) -> None:
        self._repo = CardRepository(storage, tenant_id, cipher)

    def _ready(self) -> CardRepository:
        return self._repo.ready()

    def save(self, instance_id: str, card: SentCard) -> None:
        self._ready().upsert(
            {
                "PartitionKey": check_key("instance_id", instance_id),
                "RowKey": CARD_ROW_PREFIX + check_key("user", card.user.lower()),
                "card": {
                    "conversation_id": card.conversation_id,
                    "service_url": card.service_url,
                    "activity_id": card.activity_id,
                },
            }
        )

    def of_gate(self, instance_id: str) -> list[SentCard]:
        rows = self._ready().query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": check_key("instance_id", instance_id), "lo": CARD_ROW_PREFIX, "hi": CARD_ROW_PREFIX[:-1] + "}"},
        )
        return [
            SentCard(
                user=str(row["RowKey"])[len(CARD_ROW_PREFIX) :],
                conversation_id=row["card"]["conversation_id"],
                service_url=row["card"]["service_url"],
                activity_id=row["card"]["activity_id"],
            )
            for row in rows
        ]


class AppInstaller(Protocol):
    """Installs the bot's Teams app for a user (Graph in Azure). Raises when it cannot."""

    def install(self, user_oid: str) -> None: ...


class BotNotInstalled(Exception):
    pass


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


class TeamsCardNotifier:
    """The Teams bot as a notification channel (the `Notifier` port) that also closes its cards
    (`gate_closed`)."""

    def __init__(
        self,
        *,
        app_id: str,
        service_url: str,
        credential: TokenCredential,
        storage: StorageAccount,
        cipher: EnvelopeCipher,
        entra_tenants_for: Callable[[str], Iterable[str]],
        installer: AppInstaller | None = None,
        base_url: str | None = None,
        bot_tenant_id: str | None = None,
        directory: UserDirectory | None = None,
    ) -> None:
        self._directory = directory
        self._app_id = app_id
        self._service_url = service_url
        self._credential = credential
        self._storage = storage
        self._cipher = cipher
        self._entra_tenants_for = entra_tenants_for
        self._installer = installer
        self._base_url = base_url
        self._bot_tenant_id = bot_tenant_id

    def __repr__(self) -> str:
        return f"TeamsCardNotifier(app_id={self._app_id!r})"

    # ----- the Notifier port -------------------------------------------------------------------------------

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
        """Approval requests become approval cards (recorded, so they can be closed); L1 notices ("info") and
        L3 tasks ("human_task") become follow-up cards. Other notifications are not cards."""
        kinds = ("approval_request", "info", "human_task")
        if notification.kind not in kinds or not notification.instance_id:
            return NotificationResult(ok=True)
        approval = notification.kind == "approval_request"
        view = self._view(tenant_id, notification.instance_id, can_decide=approval)
        if view is None:
            return NotificationResult(ok=False, detail="teams: the gate is not stored")
        users = self._object_ids([r.id for r in notification.parsed_recipients() if r.kind == "user"])
        if not users:
            return NotificationResult(ok=True, detail="teams: no recipient named by object id")
        tid = next(iter(self._entra_tenants_for(tenant_id)), None) or self._bot_tenant_id
        if not tid:
            return NotificationResult(ok=False, detail="teams: the tenant has no Entra tenant id")
        card = approval_card(view) if approval else follow_up_card(view, [], can_act=True)
        deliveries = asyncio.run(self._send_all(tenant_id, view, users, tid, card, record=approval))
        return NotificationResult(ok=all(d.ok for d in deliveries), deliveries=tuple(deliveries))

    def gate_closed(self, tenant_id: str, instance_id: str) -> None:
        """Every card of the gate becomes the read-only summary (decided or expired). Failures are logged."""
        sent = CardStore(self._storage, tenant_id, self._cipher).of_gate(instance_id)
        view = self._view(tenant_id, instance_id, can_decide=False)
        if not sent or view is None:
            return
        failed = asyncio.run(self._update_all(sent, approval_card(view)))
        if failed:
            log.warning("teams: %d of %d cards of %s could not be updated", failed, len(sent), instance_id)

    # ----- steps -------------------------------------------------------------------------------------------

    def _object_ids(self, users: list[str]) -> list[str]:
        """The approvers' object ids: as named, or a UPN's through the directory (a bot chat needs one)."""
        found: list[str] = []
        for user in users:
            oid = user.lower() if GUID_PATTERN.match(user.lower()) else None
            if oid is None and self._directory is not None:
                try:
                    entry = self._directory.user(user)
                except DirectoryUnavailable:
                    log.warning("teams: the directory could not resolve an approver's UPN")
                    entry = None
                oid = entry.oid.lower() if entry is not None and GUID_PATTERN.match(entry.oid.lower()) else None
            if oid is not None and oid not in found:
                found.append(oid)
        return found

    def _view(self, tenant_id: str, instance_id: str, *, can_decide: bool) -> ApprovalView | None:
        store = GateStore(self._storage, tenant_id, self._cipher)
        record = store.load(instance_id)
        if record is None:
            return None
        return build_view(record, store.votes(instance_id), can_decide=can_decide, base_url=self._base_url)

    async def _token(self) -> str:
        token = await asyncio.to_thread(self._credential.get_token, BOT_FRAMEWORK_SCOPE)
        return token.token

    async def _send_all(
        self, tenant_id: str, view: ApprovalView, users: list[str], tid: str, card: dict[str, Any], *, record: bool
    ) -> list[Delivery]:
        from microsoft_agents.hosting.core.connector.client import ConnectorClient

        store = CardStore(self._storage, tenant_id, self._cipher)
        client = ConnectorClient(self._service_url, await self._token())
        deliveries = []
        try:
            for user in users:
                try:
                    sent = await self._send_one(client, user, tid, card)
                    if record:  # approval cards are closed when the gate is decided
                        await asyncio.to_thread(store.save, view.instance_id, sent)
                    deliveries.append(Delivery(recipient=user, channel="teams", ok=True, status_code=201))
                except Exception as exc:
                    log.warning("teams: card to %s failed: %s", user, type(exc).__name__)
                    detail = (
                        "the bot's app is not installed and could not be"
                        if isinstance(exc, BotNotInstalled)
                        else type(exc).__name__
                    )
                    deliveries.append(
                        Delivery(recipient=user, channel="teams", ok=False, status_code=_status(exc), detail=detail)
                    )
        finally:
            await client.close()
        return deliveries

    async def _send_one(self, client: Any, user: str, tid: str, card: dict[str, Any]) -> SentCard:
        from microsoft_agents.activity import Activity, Attachment, ConversationParameters

        parameters = ConversationParameters.model_validate(
            {
                "isGroup": False,
                "bot": {"id": f"28:{self._app_id}"},
                "members": [{"id": user}],
                "tenantId": tid,
                "channelData": {"tenant": {"id": tid}},
            }
        )
        try:
            conversation = await client.conversations.create_conversation(parameters)
        except Exception as exc:
            if _status(exc) != 403 or self._installer is None:
                raise
            try:  # Teams refuses a chat with a user who has not installed the bot's app: install it for them
                await asyncio.to_thread(self._installer.install, user)
            except Exception:
                raise BotNotInstalled() from None
            conversation = await client.conversations.create_conversation(parameters)
        message = Activity(
            type="message",
            summary=card.get("fallbackText", "Approval needed"),
            attachments=[Attachment(content_type=CARD_CONTENT_TYPE, content=card)],
        )
        answer = await client.conversations.send_to_conversation(conversation.id, message)
        return SentCard(
            user=user, conversation_id=conversation.id, service_url=self._service_url, activity_id=answer.id
        )

    async def _update_all(self, sent: list[SentCard], card: dict[str, Any]) -> int:
        from microsoft_agents.activity import Activity, Attachment
        from microsoft_agents.hosting.core.connector.client import ConnectorClient

        token = await self._token()
        failed = 0
        clients: dict[str, Any] = {}
        try:
            for one in sent:
                client = clients.get(one.service_url) or clients.setdefault(
                    one.service_url, ConnectorClient(one.service_url, token)
                )
                update = Activity(
                    type="message",
                    id=one.activity_id,
                    attachments=[Attachment(content_type=CARD_CONTENT_TYPE, content=card)],
                )
                try:
                    await client.conversations.update_activity(one.conversation_id, one.activity_id, update)
                except Exception as exc:
                    failed += 1
                    log.warning("teams: updating the card for %s failed: %s", one.user, type(exc).__name__)
        finally:
            for client in clients.values():
                await client.close()
        return failed
