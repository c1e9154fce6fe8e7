"""Slack as an approval channel: the requests it sends, the messages it keeps up to date, the votes it takes.

- `SlackNotifier` (the `Notifier` port, a `GateClosedListener` and a `GateChangedListener`): when an L2 stage
  opens, each approver is found in the tenant's workspace (`users.lookupByEmail` with the approver's directory
  addresses, or the UPN) and gets the request as a direct message (`chat.postMessage` to the user id, scope
  `im:write`), and the tenant's `default_channel` gets it too when one is set. Where each message is (channel,
  ts) is kept per gate in the tenant's Gates table, sealed. Every message is updated in place (`chat.update`)
  after each vote, whichever channel it came from (a Slack vote at once; any vote again when the chain has
  counted it and still waits: `gate_changed`, from the chain's `gate_update_messages` activity), when a later
  stage opens and when the gate is decided or expires (then without buttons). An approver who has voted sees
  their vote on their DM instead of buttons. L1 notices and L3 tasks go out the same way as messages without
  vote buttons (not kept: no vote changes them); an L1 notice offers Acknowledge / Flag for rollback, an L3
  task Mark done (a modal: the note and the time spent), decided by `FollowUps`, the Teams card's follow-up
  service; the message acted on is then updated in place (who did what, no buttons). Failures are results
  and log lines, never a failed gate or a delayed vote: Slack is only ever called after the vote was stored,
  raised and answered, with short timeouts, and one unreachable Slack ends the round instead of waiting once
  per message.
- `SlackVotes.handle`: one queued interaction (a button press, the reject modal's submit). The Slack user
  becomes an approver only through the tenant's identity map (`slack:user:<team>/<user>`; linked by an admin,
  or here, when the tenant allows it, because the user's Slack e-mail from `users.info` is an address of the
  Entra user the directory finds for it, audited as `identity_linked` how `slack-email`). An unlinked user
  gets an ephemeral message saying how to link, never a vote. Then the one `DecisionService` decides, with
  every check it makes for the API and Teams; a refusal is shown to the person (ephemeral) with its reason.

The bot token is the tenant's (`slack.bot_token`, a Key Vault reference); the `slack_sdk.WebClient` is built
per call with it and imported on first use (cold start).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper.errors import DependencyUnavailable, GatekeeperError, NotFound
from gatekeeper.gates.store import GateIndex, GateStore
from gatekeeper.gates.view import ApprovalView, build_view
from gatekeeper.ports import Delivery, Notification, NotificationResult
from gatekeeper.security.principal import GUID_PATTERN, Principal
from gatekeeper.security.requester import DirectoryUnavailable, UserDirectory, external_id, normalise_address
from gatekeeper.slack.blocks import (
    FOLLOW_UP_DONE,
    FOLLOW_UP_KINDS,
    Notice,
    approval_message,
    follow_up_message,
    mark_done_modal,
    reject_modal,
)
from gatekeeper.slack.edge import Interaction, Tenants
from gatekeeper.store.repository import TenantRepository, check_key
from gatekeeper.store.tables import StorageAccount, TablePurpose
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap
from gatekeeper.tenancy.model import TenantRecord

if TYPE_CHECKING:
    from gatekeeper.store.envelope import EnvelopeCipher

log = logging.getLogger("gatekeeper.slack")

SLACK_API = "https://slack.com/api/"
ROW_PREFIX = "slack|"
TIMEOUT_SECONDS = 5
REQUEST_PATH_TIMEOUT = 2
LINK_HELP = (
    "You are not linked to a Gatekeeper approver yet, so nothing was recorded. Your Slack e-mail must be one "
    "of your Microsoft Entra addresses, or ask your Gatekeeper admin to run: gatekeeper identities link "
    "--tenant {tenant} slack:user:{team}/{user} <your Entra object id>"
)


class FollowUps(Protocol):
    """What the Slack follow-up buttons need of `gatekeeper.gates.followup.FollowUpService`."""

    def act(
        self, instance_id: str, principal: Principal, verb: str, note: str = "", minutes: int | None = None
    ) -> dict[str, Any]: ...

    def view(self, instance_id: str, principal: Principal) -> tuple[ApprovalView, list[dict[str, Any]], bool]: ...


class Decisions(Protocol):
    """What the Slack votes need of `gatekeeper.gates.decisions.DecisionService`."""

    def decide(self, instance_id: str, principal: Principal, body: bytes) -> tuple[int, dict[str, Any]]: ...

    def system_view(self, instance_id: str, *, can_decide: bool = False) -> ApprovalView: ...


def slack_external(team_id: str, user_id: str) -> str:
    """The identity-map key of a Slack user in one workspace."""
    identity = external_id("slack", "user", f"{team_id}/{user_id}")
    if identity is None:
        raise ValueError("not a Slack user id")
    return identity


def web_client(token: str, base_url: str, timeout: int = TIMEOUT_SECONDS) -> Any:
    from slack_sdk import WebClient  # on first use (cold start)

    return WebClient(token=token, base_url=base_url, timeout=timeout)


class _MessageRepository(TenantRepository):
    """Slack message locations in the tenant's Gates table (partition: the gate; row: `slack|<channel>|<ts>`),
    sealed: they say who was asked where."""

    purpose = TablePurpose.GATES
    sealed_properties = frozenset({"message"})


class MessageStore:
    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher) -> None:
        self._repo = _MessageRepository(storage, tenant_id, cipher)

    def _ready(self) -> _MessageRepository:
        return self._repo.ready()

    def save(self, instance_id: str, channel: str, ts: str, user: str | None, approver: str | None = None) -> None:
        """`user`: the Slack user of a DM (None for a channel post); `approver`: their Entra object id when
        known, so their DM can show their own vote."""
        self._ready().upsert(
            {
                "PartitionKey": check_key("instance_id", instance_id),
                "RowKey": ROW_PREFIX + check_key("message", f"{channel}|{ts}"),
                "message": {"channel": channel, "ts": ts, "user": user, "approver": approver},
            }
        )

    def of_gate(self, instance_id: str) -> list[dict[str, Any]]:
        rows = self._ready().query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": check_key("instance_id", instance_id), "lo": ROW_PREFIX, "hi": ROW_PREFIX[:-1] + "}"},
        )
        return [dict(row["message"]) for row in rows]


class SlackNotifier:
    """The Slack channel behind the `Notifier` port; also closes and refreshes its messages."""

    def __init__(
        self,
        *,
        tenants: Tenants,
        storage: StorageAccount,
        cipher: EnvelopeCipher,
        directory: UserDirectory | None = None,
        base_url: str | None = None,
        api_url: str = SLACK_API,
    ) -> None:
        self._tenants = tenants
        self._storage = storage
        self._cipher = cipher
        self._directory = directory
        self._base_url = base_url
        self._api_url = api_url

    def __repr__(self) -> str:
        return "SlackNotifier()"

    def _client(self, record: TenantRecord, timeout: int = TIMEOUT_SECONDS) -> Any | None:
        token = self._tenants.bot_token(record)
        return web_client(token, self._api_url, timeout) if token else None

    def _view(self, tenant_id: str, instance_id: str, *, can_decide: bool) -> ApprovalView | None:
        store = GateStore(self._storage, tenant_id, self._cipher)
        record = store.load(instance_id)
        if record is None:
            return None
        return build_view(record, store.votes(instance_id), can_decide=can_decide, base_url=self._base_url)

    # ----- the Notifier port -------------------------------------------------------------------------------

    def notify(self, tenant_id: str, notification: Notification) -> NotificationResult:
        """Approval requests become approval messages (kept, so they can be updated); L1 notices ("info") and
        L3 tasks ("human_task") become follow-up messages without vote buttons. Other kinds are not sent."""
        if notification.kind not in ("approval_request", "info", "human_task") or not notification.instance_id:
            return NotificationResult(ok=True)
        approval = notification.kind == "approval_request"
        record = self._tenants.record(tenant_id)
        if record is None or record.slack is None:
            return NotificationResult(ok=True)
        client = self._client(record)
        if client is None:
            return NotificationResult(ok=False, detail="slack: the bot token setting is empty")
        view = self._view(tenant_id, notification.instance_id, can_decide=approval)
        if view is None:
            return NotificationResult(ok=False, detail="slack: the gate is not stored")
        message = approval_message(view) if approval else follow_up_message(view)
        store = MessageStore(self._storage, tenant_id, self._cipher)
        if approval and store.of_gate(view.instance_id):  # a later stage opens: earlier messages show it as it is
            self.refresh(tenant_id, view.instance_id)
        deliveries: list[Delivery] = []
        targets: list[tuple[str, str | None, str | None]] = []  # (channel or user id, label, approver oid)
        if record.slack.direct_messages:
            for recipient in notification.parsed_recipients():
                if recipient.kind != "user":
                    continue
                user_id, oid = self._slack_user(client, recipient.id)
                if user_id is None:
                    deliveries.append(
                        Delivery(recipient=recipient.id, channel="slack", ok=False, detail="not found in Slack")
                    )
                    continue
                targets.append((user_id, recipient.id, oid))
        if record.slack.default_channel:
            targets.append((record.slack.default_channel, None, None))
        for channel, label, oid in targets:
            try:
                answer = client.chat_postMessage(channel=channel, text=message["text"], blocks=message["blocks"])
                if approval:  # follow-up messages never change: nothing to keep
                    user = channel if label else None
                    store.save(view.instance_id, str(answer["channel"]), str(answer["ts"]), user, oid)
                deliveries.append(Delivery(recipient=label or channel, channel="slack", ok=True, status_code=200))
            except Exception as exc:
                log.warning("slack: posting the request failed: %s", _error(exc))
                deliveries.append(Delivery(recipient=label or channel, channel="slack", ok=False, detail=_error(exc)))
        return NotificationResult(ok=all(d.ok for d in deliveries), deliveries=tuple(deliveries))

    def gate_closed(self, tenant_id: str, instance_id: str) -> None:
        """Every message of the gate shows the outcome, without buttons."""
        self.refresh(tenant_id, instance_id)

    def gate_changed(self, tenant_id: str, instance_id: str) -> None:
        """A vote was counted (from any channel) and the gate still waits: every message shows the votes so
        far. Called from the chain's activity, after the vote was answered; failures are logged, never
        raised."""
        failed = self.refresh(tenant_id, instance_id)
        if failed:
            log.warning("slack: %d message(s) of %s still show an earlier state", failed, instance_id)

    def refresh(self, tenant_id: str, instance_id: str, voter: tuple[str, str, Notice] | None = None) -> int:
        """Update every message of the gate to its current state (`chat.update`); `voter` (channel, ts,
        notice) puts a notice on that person's message, without buttons. Returns how many failed."""
        record = self._tenants.record(tenant_id)
        if record is None or record.slack is None:  # a tenant without Slack: no table read per vote
            return 0
        sent = MessageStore(self._storage, tenant_id, self._cipher).of_gate(instance_id)
        if not sent:
            return 0
        client = self._client(record)
        view = self._view(tenant_id, instance_id, can_decide=True)
        if client is None or view is None:
            return len(sent)
        voted = {v.voter_id.lower(): v for v in view.votes}
        failed = 0
        for index, message in enumerate(sent):
            own = voter is not None and (message["channel"], message["ts"]) == voter[:2]
            theirs = voted.get(str(message.get("approver") or "").lower())  # this DM's approver has voted
            if own and voter is not None:
                shown = approval_message(view.model_copy(update={"can_decide": False}), voter[2])
            elif theirs is not None and not view.decided:
                approved = theirs.decision == "approve"
                said = f"You {'approved' if approved else 'rejected'} this request."
                notice = Notice("approved" if approved else "rejected", said, theirs.comment)
                shown = approval_message(view.model_copy(update={"can_decide": False}), notice)
            else:
                shown = approval_message(view)
            try:
                client.chat_update(
                    channel=message["channel"], ts=message["ts"], text=shown["text"], blocks=shown["blocks"]
                )
            except Exception as exc:
                failed += 1
                log.warning("slack: updating a message of %s failed: %s", instance_id, _error(exc))
                if _unreachable(exc):  # Slack is down: the rest would each wait for their timeout too
                    failed += len(sent) - index - 1
                    break
        return failed

    def _slack_user(self, client: Any, approver: str) -> tuple[str | None, str | None]:
        """The Slack user id of an approver (object id or UPN), found by their e-mail addresses, and the
        approver's object id when known."""
        addresses: list[str] = []
        oid = approver.lower() if GUID_PATTERN.match(approver.lower()) else None
        if self._directory is not None:
            try:
                entry = self._directory.user(approver)
            except DirectoryUnavailable:
                entry = None
            if entry is not None:
                addresses += sorted(entry.addresses)
                oid = oid or (entry.oid.lower() if GUID_PATTERN.match(entry.oid.lower()) else None)
        address = normalise_address(approver)
        if address and address not in addresses:
            addresses.append(address)
        for address in addresses[:5]:
            try:
                answer = client.users_lookupByEmail(email=address)
            except Exception as exc:  # users_not_found for this address: try the next
                log.info("slack: users.lookupByEmail: %s", _error(exc))
                continue
            user_id = (answer.get("user") or {}).get("id")
            if isinstance(user_id, str):
                return user_id, oid
        return None, oid

    # ----- modal -------------------------------------------------------------------------------------------

    def open_reject_modal(self, record: TenantRecord, interaction: Interaction) -> None:
        """`views.open` on the button's trigger (valid for 3 seconds, so on the request path)."""
        client = self._client(record, REQUEST_PATH_TIMEOUT)  # Slack wants the answer within 3 s
        if client is None:
            raise DependencyUnavailable("The Slack bot token is not configured.", code="slack-unavailable")
        client.views_open(
            trigger_id=interaction.trigger_id,
            view=reject_modal(interaction.instance_id, interaction.channel or "", interaction.ts or ""),
        )

    def open_mark_done_modal(self, record: TenantRecord, interaction: Interaction) -> None:
        """`views.open` for an L3 task's Mark done (the note and the time spent), on the request path too."""
        client = self._client(record, REQUEST_PATH_TIMEOUT)
        if client is None:
            raise DependencyUnavailable("The Slack bot token is not configured.", code="slack-unavailable")
        client.views_open(
            trigger_id=interaction.trigger_id,
            view=mark_done_modal(interaction.instance_id, interaction.channel or "", interaction.ts or ""),
        )

    def show_follow_up(
        self, record: TenantRecord, interaction: Interaction, view: ApprovalView, done: list[dict[str, Any]]
    ) -> bool:
        """The follow-up message that was acted on, updated in place (`chat.update`): who did what, no
        buttons. False (logged) when Slack refuses or cannot be reached; the action stays recorded."""
        client = self._client(record)
        if client is None or not interaction.channel or not interaction.ts:
            return False
        shown = follow_up_message(view, done)
        try:
            client.chat_update(
                channel=interaction.channel, ts=interaction.ts, text=shown["text"], blocks=shown["blocks"]
            )
        except Exception as exc:
            log.warning("slack: updating the follow-up message of %s failed: %s", view.instance_id, _error(exc))
            return False
        return True

    def ephemeral(self, record: TenantRecord, interaction: Interaction, text: str) -> None:
        client = self._client(record)
        if client is None or not interaction.channel:
            return
        try:
            client.chat_postEphemeral(channel=interaction.channel, user=interaction.user_id, text=text[:3000])
        except Exception as exc:
            log.warning("slack: the ephemeral answer failed: %s", _error(exc))


def _unreachable(exc: Exception) -> bool:
    """No answer from Slack at all (refused, reset, timed out), as opposed to an API error for one message
    (`message_not_found`, `channel_not_found`), which says nothing about the next."""
    return getattr(exc, "response", None) is None


def _error(exc: Exception) -> str:
    """The Slack error code (`invalid_auth`, `channel_not_found`), never the token."""
    response = getattr(exc, "response", None)
    code = response.get("error") if response is not None and hasattr(response, "get") else None
    return str(code) if code else type(exc).__name__


class SlackVotes:
    """Takes one queued Slack decision through the tenant's identity map and the decision service."""

    def __init__(
        self,
        *,
        tenants: Tenants,
        notifier: SlackNotifier,
        identities: Callable[[str], IdentityMap],
        audit_for: Callable[[str], Any],
        entra_tenants_for: Callable[[str], Any],
        storage: StorageAccount,
        directory: UserDirectory | None = None,
        api_url: str = SLACK_API,
        followups: FollowUps | None = None,
    ) -> None:
        self._tenants = tenants
        self._notifier = notifier
        self._followups = followups
        self._identities = identities
        self._audit_for = audit_for
        self._entra_tenants_for = entra_tenants_for
        self._index = GateIndex(storage)
        self._directory = directory
        self._api_url = api_url

    def handle(
        self, tenant_id: str, interaction: Interaction, decisions: Decisions, followups: FollowUps | None = None
    ) -> str:
        """What happened, as a short code for the log: voted | acknowledge | flag_rollback | mark_done |
        refused:<code> | unlinked | ignored. `followups`: the follow-up service for this call (the trigger's,
        able to start the PSA time entry); the one given at construction otherwise."""
        record = self._tenants.record(tenant_id)
        if record is None or record.slack is None or record.slack.team_id != interaction.team_id:
            return "ignored"
        if self._index.tenant_of(interaction.instance_id) != tenant_id:  # another tenant's gate, or none
            problem = NotFound("No gate with this id waits for you here.", code="gate-not-found")
            self._notifier.ephemeral(record, interaction, f"{problem.title}: {problem.detail}")
            return "refused:gate-not-found"
        if not next(iter(self._entra_tenants_for(tenant_id)), None):
            self._notifier.ephemeral(record, interaction, "Not recorded: the tenant has no Microsoft Entra tenant set.")
            return "refused:no-entra-tenant"
        principal = self._principal(record, interaction)
        if principal is None:
            self._notifier.ephemeral(
                record,
                interaction,
                LINK_HELP.format(tenant=tenant_id, team=interaction.team_id, user=interaction.user_id),
            )
            return "unlinked"
        if interaction.kind in FOLLOW_UP_KINDS:
            return self._follow_up(record, interaction, principal, followups or self._followups)
        decision = "approve" if interaction.kind == "approve" else "reject"
        body = json.dumps({"decision": decision, "comment": interaction.comment}).encode()
        try:
            decisions.decide(interaction.instance_id, principal, body)
        except DependencyUnavailable:
            raise  # storage or the orchestration is down: the trigger defers the message (gatekeeper.ingest.redelivery)
        except GatekeeperError as problem:
            log.info("slack vote refused: %s", problem.code)
            self._notifier.ephemeral(record, interaction, f"Not recorded. {problem.title}: {problem.detail}")
            return f"refused:{problem.code}"
        notice = Notice(
            "approved" if decision == "approve" else "rejected",
            f"You {decision}d this request.",
            interaction.comment,
        )
        voter: tuple[str, str, Notice] | None = (
            (interaction.channel, interaction.ts, notice) if interaction.channel and interaction.ts else None
        )
        self._notifier.refresh(tenant_id, interaction.instance_id, voter)
        return "voted"

    def _follow_up(
        self, record: TenantRecord, interaction: Interaction, principal: Principal, followups: FollowUps | None
    ) -> str:
        """An L1 notice acknowledged or flagged for rollback, or an L3 task marked done (note, minutes): the
        follow-up service the Teams card uses decides (only people the notice went to, once each, audited; a
        "done" with minutes goes on to the PSA's time entry); the person hears the outcome (ephemeral) and the
        message they acted on shows who did what, without buttons."""
        if followups is None:
            self._notifier.ephemeral(record, interaction, "Not recorded: follow-ups are not available here.")
            return "refused:no-follow-ups"
        try:
            followups.act(
                interaction.instance_id, principal, interaction.kind, interaction.comment, interaction.minutes
            )
        except DependencyUnavailable:
            raise  # the queue retries the message
        except GatekeeperError as problem:
            log.info("slack follow-up refused: %s", problem.code)
            self._notifier.ephemeral(record, interaction, f"Not recorded. {problem.title}: {problem.detail}")
            return f"refused:{problem.code}"
        spent = f" ({interaction.minutes} min)" if interaction.minutes else ""
        self._notifier.ephemeral(record, interaction, f"Recorded: {FOLLOW_UP_DONE[interaction.kind].lower()}{spent}.")
        try:
            view, done, _ = followups.view(interaction.instance_id, principal)
        except GatekeeperError as problem:  # recorded all the same; the message keeps its earlier state
            log.warning("slack: the follow-up of %s cannot be shown: %s", interaction.instance_id, problem.code)
        else:
            self._notifier.show_follow_up(record, interaction, view, done)
        return interaction.kind

    def _principal(self, record: TenantRecord, interaction: Interaction) -> Principal | None:
        """The Entra person behind the Slack user, through the identity map only."""
        identities = self._identities(record.tenant_id)
        external = slack_external(interaction.team_id, interaction.user_id)
        oid = identities.oid_of(external)
        if oid is None and record.slack is not None and record.slack.link_by_email:
            oid = self._link_by_email(record, identities, interaction, external)
        if oid is None:
            return None
        tid = next(iter(self._entra_tenants_for(record.tenant_id)), None)
        if not tid:
            return None
        upn = None
        if self._directory is not None:
            try:
                entry = self._directory.user(oid)
                upn = entry.upn if entry is not None and entry.oid.lower() == oid else None
            except DirectoryUnavailable:
                upn = None
        return Principal(oid=oid, tid=tid, upn=upn, auth="slack", groups_overage=True)

    def _link_by_email(
        self, record: TenantRecord, identities: IdentityMap, interaction: Interaction, external: str
    ) -> str | None:
        """Link the Slack user when their Slack e-mail is an address of the Entra user the directory finds
        for it; audited before it counts."""
        if self._directory is None:
            return None
        client = self._notifier._client(record)
        if client is None:
            return None
        try:
            answer = client.users_info(user=interaction.user_id)
        except Exception as exc:
            log.warning("slack: users.info failed: %s", _error(exc))
            return None
        user = answer.get("user") or {}
        if user.get("team_id") not in (None, interaction.team_id):
            return None
        email = normalise_address((user.get("profile") or {}).get("email"))
        if email is None:
            return None
        try:
            entry = self._directory.user(email)
        except DirectoryUnavailable:
            return None
        if entry is None or email not in entry.addresses or not GUID_PATTERN.match(entry.oid.lower()):
            return None
        link = IdentityLink(external=external, oid=entry.oid.lower(), note="Slack e-mail matches an Entra address")
        identities.link(link, self._audit_for(record.tenant_id), by="slack", how="slack-email")
        return link.oid
