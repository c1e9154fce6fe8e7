"""Slack as a channel (gatekeeper/slack/channel.py) where the flows of tests/e2e/test_slack_flow.py do not go:
who gets no message and why, what a failed post or update does to the rest, how an approver is found in Slack
when the directory is down or knows them by another address, and each way a queued click ends without a vote
(a stranger's workspace, no Entra tenant, no follow-up service, an unlinkable user), each answered in Slack.

The product's SlackNotifier and SlackVotes over Azurite (gates, message locations and the identity map sealed
as in production), the real `slack_sdk.WebClient` against the local Slack Web API and the real Graph client
against the local Graph server (devstack/). The decision and follow-up services are the ports SlackVotes calls;
where a test is about what SlackVotes hands them or does with their failure, a recording double stands in."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from devstack.slack import LocalSlack
from gatekeeper.audit.log import AuditLog
from gatekeeper.errors import DependencyUnavailable, Forbidden
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.ports import Notification
from gatekeeper.security.principal import Principal
from gatekeeper.slack.channel import MessageStore, SlackNotifier, SlackVotes, slack_external
from gatekeeper.slack.edge import Interaction, Tenants
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.slack_settings import SlackSettings
from tests.support.approval_gates import store_waiting_gate

pytestmark = pytest.mark.azurite

GRAPH_TOKEN = "local-graph-token"
BOT_TOKEN = "xoxb-local-slack-bot-token"
ANNA, PIET = (str(uuid.UUID(int=i)) for i in (0xA, 0xB))
ANNA_UPN, PIET_UPN = "anna.jansen@contoso.com", "piet.devries@contoso.com"
ANNA_MAIL = "anna@contoso.com"  # the address Anna's Slack profile carries
U_ANNA, U_PIET, U_EVE = "UANNA0001", "UPIET0002", "UEVE00004"
CHANNEL = "CAPPROVALS1"


@dataclass
class Recorded:
    """The decision service port, recording what SlackVotes handed it."""

    calls: list[tuple[str, Principal, bytes]] = field(default_factory=list)

    def decide(self, instance_id: str, principal: Principal, body: bytes) -> tuple[int, dict[str, Any]]:
        self.calls.append((instance_id, principal, body))
        return 202, {}

    def system_view(self, instance_id: str, *, can_decide: bool = False) -> Any:
        raise AssertionError("not asked for by SlackVotes")


class NotReached:
    """A decision service that must not be asked: the click ends before a decision."""

    def decide(self, *args: Any) -> Any:
        raise AssertionError("no decision may be asked for")

    def system_view(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no decision may be asked for")


@dataclass
class Ch:
    storage: StorageAccount
    cipher: Any
    registry: TenantRegistry
    environ: dict[str, str]
    slack: LocalSlack
    graph: LocalGraphServer
    notifier: SlackNotifier
    votes: SlackVotes
    tenants: Tenants
    directory: GraphUserDirectory
    tenant_id: str
    team: str
    entra: str
    audit: AuditLog

    def configure(self, **changes: Any) -> TenantRecord:
        """The tenant's record again, with its Slack settings changed (`entra_tenant_ids` at the record)."""
        own = f"GK_{self.tenant_id.upper()}_"
        entra = changes.pop("entra_tenant_ids", (self.entra,))
        settings = {
            "team_id": self.team,
            "bot_token": f"env:{own}SLACK_BOT",
            "signing_secrets": (f"env:{own}SLACK_SIGNING",),
            "default_channel": CHANNEL,
            **changes,
        }
        record = TenantRecord(
            tenant_id=self.tenant_id,
            display_name="Contoso",
            entra_tenant_ids=entra,
            slack=SlackSettings(**settings),
        )
        self.registry.import_records([record])
        return record

    @property
    def record(self) -> TenantRecord:
        found = self.tenants.record(self.tenant_id)
        assert found is not None
        return found

    def no_bot_token(self) -> None:
        self.environ.pop(f"GK_{self.tenant_id.upper()}_SLACK_BOT")

    def gate(self, approvers: tuple[str, ...] = (ANNA, PIET)) -> str:
        return store_waiting_gate(self.storage, self.tenant_id, self.cipher, approvers)

    def ask(self, gate: str, *recipients: str, kind: str = "approval_request") -> Any:
        notification = Notification(
            kind=kind,  # type: ignore[arg-type]
            recipients=recipients or (ANNA,),
            title="Approval needed",
            link="https://gatekeeper.contoso.com/api/approvals/x/page",
            instance_id=gate,
        )
        return self.notifier.notify(self.tenant_id, notification)

    def sent(self, gate: str) -> list[dict[str, Any]]:
        return MessageStore(self.storage, self.tenant_id, self.cipher).of_gate(gate)

    def click(self, gate: str, user: str = U_ANNA, kind: str = "approve", channel: str | None = None) -> Interaction:
        return Interaction(
            kind=kind,
            team_id=self.team,
            user_id=user,
            instance_id=gate,
            channel=channel or self.slack.dm_channel(user),
            ts="1900000001.000001",
        )

    def link(self, user: str, oid: str) -> None:
        IdentityMap(self.storage, self.tenant_id, self.cipher).link(
            IdentityLink(external=slack_external(self.team, user), oid=oid, note="test"), self.audit, by="admin"
        )

    def linked(self, user: str) -> str | None:
        return IdentityMap(self.storage, self.tenant_id, self.cipher).oid_of(slack_external(self.team, user))


@pytest.fixture
def ch(azurite, tmp_path: Path) -> Iterator[Ch]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path / "keys")))
    tenant_id = "c" + uuid.uuid4().hex[:12]
    team = "T" + uuid.uuid4().hex[:10].upper()
    entra = str(uuid.uuid4())
    own = f"GK_{tenant_id.upper()}_"
    environ = {f"{own}SLACK_BOT": BOT_TOKEN, f"{own}SLACK_SIGNING": "signing-secret"}

    def secret(ref: str) -> bytes | None:
        value = environ.get(ref.removeprefix("env:"))
        return value.encode() if value else None

    registry = TenantRegistry(storage, cache_seconds=0)
    tenants = Tenants(registry.tenant_for_identity, registry.get, registry.records, secret)
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    slack_users = {
        U_ANNA: {"email": ANNA_MAIL, "real_name": "Anna"},
        U_PIET: {"email": PIET_UPN, "real_name": "Piet"},
        U_EVE: {"email": "eve@elsewhere.example", "real_name": "Eve"},
    }
    graph_users = {
        ANNA: {"userPrincipalName": ANNA_UPN, "mail": ANNA_MAIL},
        PIET: {"userPrincipalName": PIET_UPN, "mail": PIET_UPN},
    }
    with (
        LocalSlack(BOT_TOKEN, team, slack_users) as slack,
        LocalGraphServer(GRAPH_TOKEN, users=graph_users) as graph,
    ):
        client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
        directory = GraphUserDirectory(client, http_client=http)
        notifier = SlackNotifier(
            tenants=tenants, storage=storage, cipher=cipher, directory=directory, api_url=slack.api_url
        )
        votes = SlackVotes(
            tenants=tenants,
            notifier=notifier,
            identities=lambda t: IdentityMap(storage, t, cipher),
            audit_for=lambda _t: audit,
            entra_tenants_for=lambda t: registry.get(t).entra_tenant_ids if registry.get(t) else (),  # type: ignore[union-attr]
            storage=storage,
            directory=directory,
        )
        rig = Ch(
            storage,
            cipher,
            registry,
            environ,
            slack,
            graph,
            notifier,
            votes,
            tenants,
            directory,
            tenant_id,
            team,
            entra,
            audit,
        )
        rig.configure()
        try:
            yield rig
        finally:
            directory.close()


# --- notify: who gets a message ------------------------------------------------------------------------------


def test_alerts_and_tenants_without_slack_are_not_sent_and_count_as_delivered(ch: Ch):
    gate = ch.gate()
    assert ch.ask(gate, kind="alert").ok and ch.slack.messages == {}
    ch.registry.import_records(
        [TenantRecord(tenant_id=ch.tenant_id, display_name="Contoso", entra_tenant_ids=(ch.entra,))]
    )
    assert ch.ask(gate).ok and ch.slack.messages == {} and ch.sent(gate) == []


def test_an_empty_bot_token_setting_is_a_failed_delivery_naming_it_and_nothing_is_posted(ch: Ch):
    ch.no_bot_token()
    result = ch.ask(ch.gate())
    assert not result.ok and result.detail == "slack: the bot token setting is empty"
    assert ch.slack.messages == {}


def test_a_gate_that_is_not_stored_is_a_failed_delivery_and_nothing_is_posted(ch: Ch):
    result = ch.ask("gate-" + uuid.uuid4().hex)
    assert not result.ok and result.detail == "slack: the gate is not stored"
    assert ch.slack.messages == {}


def test_groups_are_skipped_an_approver_slack_does_not_know_is_reported_and_the_rest_are_sent(ch: Ch):
    gate = ch.gate()
    stranger = str(uuid.uuid4())  # in neither the directory nor Slack, and not an address
    result = ch.ask(gate, f"group:{uuid.uuid4()}", stranger, ANNA)
    delivered = [(d.recipient, d.ok, d.detail) for d in result.deliveries]
    assert delivered == [(stranger, False, "not found in Slack"), (ANNA, True, ""), (CHANNEL, True, "")]
    assert not result.ok
    assert len(ch.slack.messages_in(ch.slack.dm_channel(U_ANNA))) == 1 and len(ch.slack.messages_in(CHANNEL)) == 1
    assert {(m["user"], m["approver"]) for m in ch.sent(gate)} == {(U_ANNA, ANNA), (None, None)}


def test_with_direct_messages_off_only_the_channel_gets_the_request(ch: Ch):
    ch.configure(direct_messages=False)
    gate = ch.gate()
    result = ch.ask(gate, ANNA)
    assert result.ok and [d.recipient for d in result.deliveries] == [CHANNEL]
    assert ch.slack.messages_in(ch.slack.dm_channel(U_ANNA)) == []


def test_without_a_default_channel_only_the_approvers_get_the_request(ch: Ch):
    ch.configure(default_channel=None)
    gate = ch.gate()
    result = ch.ask(gate, ANNA)
    assert result.ok and [d.recipient for d in result.deliveries] == [ANNA]
    assert ch.slack.messages_in(CHANNEL) == []


def test_a_post_slack_refuses_is_a_failed_delivery_with_its_code_and_the_next_is_still_sent(ch: Ch):
    gate = ch.gate()
    ch.slack.fail_next(1, 200, path_contains="chat.postMessage", body={"ok": False, "error": "channel_not_found"})
    result = ch.ask(gate, ANNA)
    assert [(d.recipient, d.ok, d.detail) for d in result.deliveries] == [
        (ANNA, False, "channel_not_found"),
        (CHANNEL, True, ""),
    ]
    assert [m["channel"] for m in ch.sent(gate)] == [CHANNEL]  # only what was posted is kept


def test_a_later_stage_updates_the_earlier_messages_before_asking_again(ch: Ch):
    gate = ch.gate()
    ch.ask(gate, ANNA)
    (first,) = ch.slack.messages_in(ch.slack.dm_channel(U_ANNA))
    assert first["updates"] == 0
    ch.ask(gate, PIET)  # the next stage opens
    assert first["updates"] == 1  # the earlier message now shows the gate as it is
    assert len(ch.slack.messages_in(ch.slack.dm_channel(U_PIET))) == 1


# --- finding an approver in Slack ----------------------------------------------------------------------------


def test_an_approver_is_found_by_a_later_directory_address_when_the_first_is_unknown_to_slack(ch: Ch):
    gate = ch.gate()
    result = ch.ask(gate, ANNA)  # the directory has anna.jansen@ (not in Slack) before anna@ (Slack's)
    assert [(d.recipient, d.ok) for d in result.deliveries] == [(ANNA, True), (CHANNEL, True)]
    assert len(ch.slack.messages_in(ch.slack.dm_channel(U_ANNA))) == 1


def test_with_the_directory_down_an_approver_named_by_address_is_still_found_by_it(ch: Ch):
    gate = ch.gate()
    ch.graph.fail_next(5, 503, path_contains="/users/")
    result = ch.ask(gate, PIET_UPN)
    assert [(d.recipient, d.ok) for d in result.deliveries] == [(PIET_UPN, True), (CHANNEL, True)]
    (kept,) = [m for m in ch.sent(gate) if m["user"]]
    assert kept["user"] == U_PIET
    assert kept["approver"] is None  # no object id known for them: their DM cannot show their own vote


def test_without_a_directory_an_approver_is_looked_up_by_the_address_they_are_named_by(ch: Ch):
    notifier = SlackNotifier(tenants=ch.tenants, storage=ch.storage, cipher=ch.cipher, api_url=ch.slack.api_url)
    gate = ch.gate()
    notification = Notification(
        kind="approval_request",
        recipients=(PIET_UPN, ANNA),
        title="t",
        link="https://gatekeeper.contoso.com/api/approvals/x/page",
        instance_id=gate,
    )
    result = notifier.notify(ch.tenant_id, notification)
    delivered = [(d.recipient, d.ok, d.detail) for d in result.deliveries]
    assert delivered == [(ANNA, False, "not found in Slack"), (PIET_UPN, True, ""), (CHANNEL, True, "")]


def test_an_approver_the_directory_does_not_know_is_looked_up_by_the_address_they_are_named_by(ch: Ch):
    ch.slack.users["UNEW00006"] = {"email": "new.hire@contoso.com"}
    gate = ch.gate()
    result = ch.ask(gate, "new.hire@contoso.com")  # Graph answers 404
    assert [(d.recipient, d.ok) for d in result.deliveries] == [("new.hire@contoso.com", True), (CHANNEL, True)]


# --- refresh -----------------------------------------------------------------------------------------------


def test_one_message_slack_cannot_find_does_not_stop_the_others_being_updated(ch: Ch):
    gate = ch.gate()
    ch.ask(gate, ANNA)
    MessageStore(ch.storage, ch.tenant_id, ch.cipher).save(gate, "DGONE00001", "1700000000.000001", "UGONE0001")
    assert ch.notifier.refresh(ch.tenant_id, gate) == 1  # message_not_found for the deleted one only
    assert [m["updates"] for m in ch.slack.messages.values()] == [1, 1]


def test_refresh_without_a_bot_token_counts_every_message_as_not_updated(ch: Ch):
    gate = ch.gate()
    ch.ask(gate, ANNA)
    ch.no_bot_token()
    assert ch.notifier.refresh(ch.tenant_id, gate) == 2
    assert [m["updates"] for m in ch.slack.messages.values()] == [0, 0]


# --- request-path modals and follow-up answers -----------------------------------------------------------------


def test_opening_a_modal_without_a_bot_token_is_a_dependency_failure_not_a_silent_ack(ch: Ch):
    record = ch.record
    ch.no_bot_token()
    press = Interaction("reject", ch.team, U_ANNA, ch.gate(), channel="DUANNA0001", ts="1.1", trigger_id="t.1")
    with pytest.raises(DependencyUnavailable) as reject:
        ch.notifier.open_reject_modal(record, press)
    with pytest.raises(DependencyUnavailable) as done:
        ch.notifier.open_mark_done_modal(record, press)
    assert reject.value.code == done.value.code == "slack-unavailable"
    assert ch.slack.views == []


def test_a_follow_up_message_is_not_updated_without_a_token_or_a_message_and_a_refusal_is_reported(
    ch: Ch, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="gatekeeper.slack")
    gate = ch.gate()
    ch.ask(gate, ANNA, kind="info")
    ((channel, ts),) = [key for key in ch.slack.messages if key[0] == ch.slack.dm_channel(U_ANNA)]
    view = ch.notifier._view(ch.tenant_id, gate, can_decide=False)
    assert view is not None
    on_message = Interaction("acknowledge", ch.team, U_ANNA, gate, channel=channel, ts=ts)
    assert not ch.notifier.show_follow_up(ch.record, Interaction("acknowledge", ch.team, U_ANNA, gate), view, [])
    no_channel = Interaction("acknowledge", ch.team, U_ANNA, gate, ts=ts)
    assert not ch.notifier.show_follow_up(ch.record, no_channel, view, [])
    assert "updating the follow-up message" not in caplog.text  # not even tried: nothing to update
    ch.slack.fail_next(1, 200, path_contains="chat.update", body={"ok": False, "error": "cant_update_message"})
    assert not ch.notifier.show_follow_up(ch.record, on_message, view, [])
    assert ch.slack.messages[(channel, ts)]["updates"] == 0
    assert ch.notifier.show_follow_up(ch.record, on_message, view, [])
    assert ch.slack.messages[(channel, ts)]["updates"] == 1
    record = ch.record
    ch.no_bot_token()
    assert not ch.notifier.show_follow_up(record, on_message, view, [])


def test_an_ephemeral_answer_needs_a_channel_and_its_failure_is_logged_not_raised(
    ch: Ch, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="gatekeeper.slack")
    ch.notifier.ephemeral(ch.record, Interaction("approve", ch.team, U_ANNA, "gate-x"), "no channel")
    assert ch.slack.ephemeral == []
    ch.notifier.ephemeral(ch.record, Interaction("approve", ch.team, "UNOBODY01", "gate-x", channel="D1"), "hi")
    assert ch.slack.ephemeral == []  # user_not_in_channel
    assert any("the ephemeral answer failed: user_not_in_channel" in r.getMessage() for r in caplog.records)
    assert BOT_TOKEN not in caplog.text


def test_the_notifier_never_shows_its_token_in_its_repr():
    assert repr(SlackNotifier(tenants=None, storage=None, cipher=None)) == "SlackNotifier()"  # type: ignore[arg-type]


# --- queued clicks that end without a vote -------------------------------------------------------------------


def test_a_click_for_a_tenant_without_slack_or_from_another_workspace_is_ignored_silently(ch: Ch):
    gate = ch.gate()
    ch.link(U_ANNA, ANNA)
    other = Interaction("approve", "TOTHERTEAM1", U_ANNA, gate, channel="DUANNA0001")
    assert ch.votes.handle(ch.tenant_id, other, NotReached()) == "ignored"
    assert ch.votes.handle("nosuchtenant", ch.click(gate), NotReached()) == "ignored"
    ch.registry.import_records(
        [TenantRecord(tenant_id=ch.tenant_id, display_name="Contoso", entra_tenant_ids=(ch.entra,))]
    )
    assert ch.votes.handle(ch.tenant_id, ch.click(gate), NotReached()) == "ignored"
    assert ch.slack.ephemeral == []


def test_a_click_for_a_tenant_without_an_entra_tenant_is_refused_and_told(ch: Ch):
    ch.configure(entra_tenant_ids=())
    gate = ch.gate()
    ch.link(U_ANNA, ANNA)
    assert ch.votes.handle(ch.tenant_id, ch.click(gate), NotReached()) == "refused:no-entra-tenant"
    (told,) = ch.slack.ephemeral
    assert told["user"] == U_ANNA and "no Microsoft Entra tenant" in told["text"]


def test_a_follow_up_click_without_a_follow_up_service_is_refused_and_told(ch: Ch):
    gate = ch.gate()
    ch.link(U_ANNA, ANNA)
    assert ch.votes.handle(ch.tenant_id, ch.click(gate, kind="acknowledge"), NotReached()) == "refused:no-follow-ups"
    (told,) = ch.slack.ephemeral
    assert "follow-ups are not available" in told["text"]


class FollowUpsDown:
    def act(self, *args: Any, **kwargs: Any) -> Any:
        raise DependencyUnavailable("storage is down", code="storage-unavailable")

    def view(self, *args: Any) -> Any:
        raise AssertionError("not reached")


class FollowUpsUnviewable:
    """Records the act; then the notice cannot be shown (the record changed under it)."""

    def __init__(self) -> None:
        self.acted: list[tuple[str, str]] = []

    def act(self, instance_id: str, principal: Principal, verb: str, note: str = "", minutes: Any = None) -> Any:
        self.acted.append((principal.oid, verb))
        return {}

    def view(self, instance_id: str, principal: Principal) -> Any:
        raise Forbidden("not any more", code="not-notified")


def test_a_follow_up_meeting_an_outage_is_raised_for_the_queue_and_nobody_is_told_not_recorded(ch: Ch):
    gate = ch.gate()
    ch.link(U_ANNA, ANNA)
    with pytest.raises(DependencyUnavailable):
        ch.votes.handle(ch.tenant_id, ch.click(gate, kind="acknowledge"), NotReached(), FollowUpsDown())
    assert ch.slack.ephemeral == []


def test_a_recorded_follow_up_whose_message_cannot_be_shown_stays_recorded_and_is_confirmed(
    ch: Ch, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="gatekeeper.slack")
    gate = ch.gate()
    ch.link(U_ANNA, ANNA)
    followups = FollowUpsUnviewable()
    assert ch.votes.handle(ch.tenant_id, ch.click(gate, kind="acknowledge"), NotReached(), followups) == "acknowledge"
    assert followups.acted == [(ANNA, "acknowledge")]
    assert [e["text"] for e in ch.slack.ephemeral] == ["Recorded: acknowledged."]
    assert any(f"the follow-up of {gate} cannot be shown: not-notified" in r.getMessage() for r in caplog.records)


def test_with_the_directory_down_a_linked_approvers_vote_still_goes_to_the_decision_service(ch: Ch):
    gate = ch.gate()
    ch.link(U_ANNA, ANNA)
    ch.graph.fail_next(5, 503, path_contains="/users/")
    decisions = Recorded()
    assert ch.votes.handle(ch.tenant_id, ch.click(gate, kind="reject-submitted"), decisions) == "voted"
    ((instance, principal, body),) = decisions.calls
    assert (instance, principal.oid, principal.tid, principal.upn, principal.auth) == (
        gate,
        ANNA,
        ch.entra,
        None,
        "slack",
    )
    assert b'"reject"' in body


def test_a_linked_approvers_vote_carries_their_upn_from_the_directory(ch: Ch):
    gate = ch.gate()
    ch.link(U_ANNA, ANNA)
    decisions = Recorded()
    assert ch.votes.handle(ch.tenant_id, ch.click(gate), decisions) == "voted"
    assert [p.upn for _, p, _ in decisions.calls] == [ANNA_UPN]


# --- linking by Slack e-mail: every way it declines ------------------------------------------------------------


def unlinked(ch: Ch, votes: SlackVotes | None = None, user: str = U_PIET) -> None:
    """Piet's Slack e-mail is his UPN, which the directory finds: linked unless something declines."""
    gate = ch.gate()
    assert (votes or ch.votes).handle(ch.tenant_id, ch.click(gate, user=user), NotReached()) == "unlinked"
    assert ch.linked(user) is None
    assert not [e for e in ch.audit.records() if e.kind == "identity_linked"]


def test_the_email_link_happens_when_the_slack_email_is_the_approvers_address(ch: Ch):
    decisions = Recorded()
    assert ch.votes.handle(ch.tenant_id, ch.click(ch.gate(), user=U_PIET), decisions) == "voted"  # the control
    assert ch.linked(U_PIET) == PIET and [p.oid for _, p, _ in decisions.calls] == [PIET]
    assert [e.data["how"] for e in ch.audit.records() if e.kind == "identity_linked"] == ["slack-email"]


def votes_with(ch: Ch, directory: Any) -> SlackVotes:
    """The rig's Slack votes with another user directory (None: no directory at all)."""
    return SlackVotes(
        tenants=ch.tenants,
        notifier=ch.notifier,
        identities=lambda t: IdentityMap(ch.storage, t, ch.cipher),
        audit_for=lambda _t: ch.audit,
        entra_tenants_for=lambda _t: (ch.entra,),
        storage=ch.storage,
        directory=directory,
    )


def test_no_email_link_without_a_directory(ch: Ch):
    votes = votes_with(ch, None)
    unlinked(ch, votes)
    ch.link(U_ANNA, ANNA)  # an admin's link still counts; without a directory the vote carries no UPN
    decisions = Recorded()
    assert votes.handle(ch.tenant_id, ch.click(ch.gate()), decisions) == "voted"
    assert [(p.oid, p.upn) for _, p, _ in decisions.calls] == [(ANNA, None)]


def test_no_email_link_without_a_bot_token(ch: Ch, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="gatekeeper.slack")
    ch.no_bot_token()
    unlinked(ch)
    assert "users.info failed" not in caplog.text  # Slack is not asked without the tenant's token


def test_no_email_link_when_slack_users_info_fails(ch: Ch):
    ch.slack.fail_next(1, 200, path_contains="users.info", body={"ok": False, "error": "ratelimited"})
    unlinked(ch)


def test_no_email_link_for_a_user_of_another_workspace(ch: Ch):
    ch.slack.team_id = "TSOMEWHERE1"  # users.info answers with another team_id
    unlinked(ch)


def test_no_email_link_for_a_slack_user_without_an_email(ch: Ch):
    ch.slack.users[U_PIET] = {"real_name": "Piet"}
    unlinked(ch)


def test_no_email_link_when_the_directory_is_down(ch: Ch):
    ch.graph.fail_next(5, 503, path_contains="/users/")
    unlinked(ch)


def test_no_email_link_when_the_directory_knows_nobody_with_the_slack_email(ch: Ch):
    unlinked(ch, user=U_EVE)


def test_a_lookup_answer_without_a_user_id_is_not_taken_for_the_approver(ch: Ch):
    gate = ch.gate()
    ch.slack.fail_next(1, 200, path_contains="users.lookupByEmail", body={"ok": True, "user": {"name": "ghost"}})
    result = ch.ask(gate, ANNA)  # her first address answers without an id; her second finds her
    assert [(d.recipient, d.ok) for d in result.deliveries] == [(ANNA, True), (CHANNEL, True)]
    assert len(ch.slack.messages_in(ch.slack.dm_channel(U_ANNA))) == 1
    lookups = [r for r in ch.slack.requests if r.path.endswith("users.lookupByEmail")]
    assert len(lookups) == 2
