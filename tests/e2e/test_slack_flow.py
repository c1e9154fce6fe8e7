"""A gate approved from Slack, end to end: the real orchestrators in the local runner, the real `slack_sdk`
WebClient against the local Slack Web API (devstack/slack.py), interaction payloads shaped like Slack's
published examples (tests/fixtures/slack/, each with its source URL) signed as Slack signs them, the tenant
registry, identity map, Graph directory (local) and Azurite.

A stage opens -> each approver gets a Block Kit DM -> an approver presses Approve (signed block_actions) ->
the route verifies and queues it -> the queue work maps the Slack user to the Entra approver (by Slack e-mail,
audited) -> the decision service decides -> the orchestration gets the vote -> the pipeline is called back ->
every message is updated in place without buttons."""

from __future__ import annotations

import base64
import copy
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from devstack.gates import LocalGates, local_gates
from devstack.graph import LocalGraphServer
from devstack.runner import ManualClock
from devstack.server import StaticTokenCredential
from devstack.slack import LocalSlack, form_body, sign
from devstack.webhook import LocalWebhookReceiver
from gatekeeper.audit.log import AuditLog
from gatekeeper.errors import DependencyUnavailable, InvalidInput, Unauthenticated
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent, WebhookCallback
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.gates.followup import FollowUpService
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.integrations.notify import FanOutNotifier
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.security.principal import Principal
from gatekeeper.settings import Settings
from gatekeeper.slack.blocks import (
    ACKNOWLEDGE_ACTION,
    APPROVE_ACTION,
    COMMENT_ACTION,
    COMMENT_BLOCK,
    FLAG_ROLLBACK_ACTION,
    MARK_DONE_ACTION,
    MARK_DONE_MODAL,
    MINUTES_ACTION,
    MINUTES_BLOCK,
    NOTE_ACTION,
    NOTE_BLOCK,
    REJECT_ACTION,
    REJECT_MODAL,
    violations,
)
from gatekeeper.slack.channel import MessageStore, SlackNotifier, SlackVotes, slack_external
from gatekeeper.slack.edge import Tenants, read_queue_message
from gatekeeper.slack.routes import SlackRoutes, queue_sender
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.identities import IdentityMap
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry
from gatekeeper.tenancy.slack_settings import SlackSettings

pytestmark = pytest.mark.azurite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
TID = "3f6c2a8e-1b7d-4c9e-8a5f-0d2e4b6c8a10"
GRAPH_TOKEN = "local-graph-token"
BOT_TOKEN = "xoxb-local-slack-bot-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
WEBHOOK_SECRET = b"webhook-signing-secret-for-slack-tests"
ANNA, PIET, DEV = (str(uuid.UUID(int=i)) for i in (0xA, 0xB, 0xDE))
ANNA_UPN, PIET_UPN, DEV_UPN = "anna.jansen@contoso.com", "piet.devries@contoso.com", "dev@contoso.com"
U_ANNA, U_PIET, U_DEV, U_EVE = "UANNA0001", "UPIET0002", "UDEV00003", "UEVE00004"
OPS, OPS_UPN, U_OPS = str(uuid.UUID(int=0x0F)), "ops@contoso.com", "UOPS00005"
CHANNEL = "CAPPROVALS1"
START = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)


def sample(name: str) -> dict[str, Any]:
    document = json.loads((FIXTURES / f"{name}.json").read_text())
    document.pop("_source")
    return document


@dataclass
class Env:
    gates: LocalGates
    slack: LocalSlack
    routes: SlackRoutes
    votes: SlackVotes
    queue: QueueClient
    receiver: LocalWebhookReceiver
    audit: AuditLog
    storage: StorageAccount
    cipher: Any
    tenant_id: str
    team: str

    def submit(self, environment: str = "production", action: ActionKind = ActionKind.DEPLOY) -> str:
        return self.gates.submit(
            PipelineEvent(
                tenant_id=self.tenant_id,
                source=EventSource.GENERIC,
                kind=EventKind.GATE_REQUEST,
                action=action,
                environment=environment,
                repository="contoso/webshop",
                ref="refs/heads/main",
                commit="a1b2c3d",
                actor=DEV_UPN,
                run_id=uuid.uuid4().hex,
                callback=WebhookCallback(url=self.receiver.url + "/ci/hook"),
                requester_ids=(f"entra:oid:{DEV}",),
            )
        )

    def dm(self, user: str) -> dict[str, Any]:
        (message,) = self.slack.messages_in(self.slack.dm_channel(user))
        return message

    def button(
        self, gate: str, user: str, action_id: str, *, team: str | None = None, channel: str | None = None
    ) -> dict[str, Any]:
        """A block_actions payload as Slack sends it when `user` presses a button on their DM (or `channel`)."""
        payload = sample("block_actions")
        team = team or self.team
        channel = channel or self.slack.dm_channel(user)
        (ts,) = [t for (c, t) in self.slack.messages if c == channel]
        payload["team"]["id"] = team
        payload["user"].update(id=user, team_id=team)
        payload["channel"] = {"id": channel, "name": "directmessage"}
        payload["container"].update(message_ts=ts, channel_id=channel)
        payload["actions"][0].update(action_id=action_id, value=gate, block_id="decision")
        return payload

    def modal_submit(self, gate: str, user: str, comment: str | None) -> dict[str, Any]:
        payload = sample("view_submission")
        channel = self.slack.dm_channel(user)
        (ts,) = [t for (c, t) in self.slack.messages if c == channel]
        payload["team"]["id"] = payload["view"]["team_id"] = self.team
        payload["user"].update(id=user, team_id=self.team)
        payload["view"].update(callback_id=REJECT_MODAL, private_metadata=f"{gate}|{channel}|{ts}")
        payload["view"]["state"] = {
            "values": {COMMENT_BLOCK: {COMMENT_ACTION: {"type": "plain_text_input", "value": comment}}}
        }
        return payload

    def done_submit(
        self, gate: str, user: str, note: str | None, minutes: str | None = None, *, channel: str | None = None
    ) -> dict[str, Any]:
        """The mark-done modal's view_submission as Slack sends it (a number input's value is text)."""
        payload = sample("view_submission")
        channel = channel or self.slack.dm_channel(user)
        (ts,) = [t for (c, t) in self.slack.messages if c == channel]
        payload["team"]["id"] = payload["view"]["team_id"] = self.team
        payload["user"].update(id=user, team_id=self.team)
        payload["view"].update(callback_id=MARK_DONE_MODAL, private_metadata=f"{gate}|{channel}|{ts}")
        values: dict[str, Any] = {NOTE_BLOCK: {NOTE_ACTION: {"type": "plain_text_input", "value": note}}}
        values[MINUTES_BLOCK] = {MINUTES_ACTION: {"type": "number_input", "value": minutes}}
        payload["view"]["state"] = {"values": values}
        return payload

    def post(self, payload: dict[str, Any], *, secret: str = SIGNING_SECRET, at: int | None = None) -> Any:
        body = form_body(payload)
        return self.routes.interactions(body, sign(secret, body, at))

    def work(self) -> list[str]:
        """Drain the queue as the queue trigger does, then let the orchestrations react."""
        outcomes = []
        for message in self.queue.receive_messages():
            tenant_id, interaction = read_queue_message(self.cipher, base64.b64decode(message.content))
            outcomes.append(self.votes.handle(tenant_id, interaction, self.gates.decisions))
            self.queue.delete_message(message)
        self.gates.runner.run_until_idle()
        return outcomes

    def callbacks(self) -> list[str]:
        return [d["body"]["state"] for d in self.receiver.deliveries if d["body"].get("event") == "gate.completed"]


def buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def text_of(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


@pytest.fixture
def env(azurite, tmp_path_factory, request) -> Iterator[Env]:
    """`request.param` (indirect): {"quorum": N} for the production stage (1 by default)."""
    quorum = getattr(request, "param", {}).get("quorum", 1)
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path_factory.mktemp("keys"))))
    tenant_id = "t" + uuid.uuid4().hex[:12]
    team = "T" + uuid.uuid4().hex[:10].upper()
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    policy = load_policy(
        {
            "version": 1,
            "defaults": {
                "level": "L2",
                "approval": {
                    "stages": [
                        {
                            "name": "cab",
                            "approvers": [ANNA, PIET, DEV],
                            "quorum": quorum,
                            "timeout": "PT1H",
                            "on_timeout": "reject",
                        }
                    ]
                },
            },
            "rules": [
                {"name": "staging", "match": {"environments": ["staging"]}, "level": "L1"},
                {"name": "secrets", "match": {"actions": ["secret_access"]}, "level": "L3"},
            ],
        }
    )
    registry = TenantRegistry(storage)
    own = f"GK_{tenant_id.upper()}_"  # a tenant's references name only its own app settings
    record = TenantRecord(
        tenant_id=tenant_id,
        display_name="Contoso",
        slack=SlackSettings(
            team_id=team,
            bot_token=f"env:{own}SLACK_BOT",
            signing_secrets=(f"env:{own}SLACK_SIGNING",),
            default_channel=CHANNEL,
        ),
    )
    registry.import_records([record])
    environ = {f"{own}SLACK_BOT": BOT_TOKEN, f"{own}SLACK_SIGNING": SIGNING_SECRET}

    def secret(ref: str) -> bytes | None:
        value = environ.get(ref.removeprefix("env:"))
        return value.encode() if value else None

    tenants = Tenants(registry.tenant_for_identity, registry.get, registry.records, secret)
    slack_users = {
        U_ANNA: {"email": ANNA_UPN, "real_name": "Anna Jansen"},
        U_PIET: {"email": PIET_UPN, "real_name": "Piet de Vries"},
        U_DEV: {"email": DEV_UPN, "real_name": "Dev"},
        U_EVE: {"email": "eve@elsewhere.example", "real_name": "Eve"},
        U_OPS: {"email": OPS_UPN, "real_name": "Ops"},
    }
    graph_users = {
        oid: {"userPrincipalName": upn, "mail": upn}
        for oid, upn in ((ANNA, ANNA_UPN), (PIET, PIET_UPN), (DEV, DEV_UPN), (OPS, OPS_UPN))
    }
    with (
        LocalGraphServer(GRAPH_TOKEN, users=graph_users) as graph,
        LocalWebhookReceiver(WEBHOOK_SECRET) as receiver,
        LocalSlack(BOT_TOKEN, team, slack_users) as slack,
    ):
        client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
        directory = GraphUserDirectory(client, http_client=http)
        notifier = SlackNotifier(
            tenants=tenants,
            storage=storage,
            cipher=cipher,
            directory=directory,
            base_url="https://gatekeeper.contoso.com",
            api_url=slack.api_url,
        )
        gates = local_gates(
            storage,
            cipher,
            decider=PolicyDecider(lambda _t: policy),
            audit_for=lambda _t: audit,
            notifier=FanOutNotifier([OutboxNotifier(tmp_path_factory.mktemp("outbox")), notifier]),
            callbacks=PipelineCallbacks(
                webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
                webhook_secret=lambda _tenant: WEBHOOK_SECRET,
            ),
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            clock=ManualClock(START),
            settings=Settings(trust_easyauth_header=False),
            directory=directory,
            operators_for=lambda _t: (OPS_UPN,),
        )
        queue_name = "slack-" + uuid.uuid4().hex[:12]
        storage.queue(queue_name).create_queue()
        votes = SlackVotes(
            tenants=tenants,
            notifier=notifier,
            identities=lambda t: IdentityMap(storage, t, cipher),
            audit_for=lambda _t: audit,
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            storage=storage,
            directory=directory,
            followups=FollowUpService(
                storage,
                cipher,
                entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
                operators_for=lambda _t: (OPS_UPN,),
                audit_for=lambda _t: audit,
            ),
        )
        try:
            yield Env(
                gates,
                slack,
                SlackRoutes(tenants, notifier, queue_sender(storage, queue_name), cipher),
                votes,
                storage.queue(queue_name),
                receiver,
                audit,
                storage,
                cipher,
                tenant_id,
                team,
            )
        finally:
            directory.close()


def test_an_approval_from_slack_runs_the_whole_gate_and_updates_every_message(env: Env):
    gate = env.submit()
    assert env.gates.runner.status(gate).runtime_status == "Running"
    for user in (U_ANNA, U_PIET, U_DEV):  # each approver got the request as a DM, with both buttons
        message = env.dm(user)
        assert buttons(message) == [APPROVE_ACTION, REJECT_ACTION] and violations(message) == []
        assert "deploy to production" in text_of(message) and "contoso/webshop" in text_of(message)
        assert message["text"].startswith("Approval needed:")

    assert env.post(env.button(gate, U_ANNA, APPROVE_ACTION)) is None  # acknowledged: an empty 200
    assert env.gates.runner.status(gate).runtime_status == "Running"  # nothing decided on the request path
    assert env.work() == ["voted"]

    status = env.gates.runner.status(gate)  # vote -> orchestration -> pipeline callback
    assert status.runtime_status == "Completed" and status.output["status"] == "approved"
    assert status.output["chain"]["votes"][0]["voter_id"] == ANNA
    assert env.callbacks() == ["approved"]
    for user in (U_ANNA, U_PIET, U_DEV):  # every message updated in place: the outcome, no buttons
        message = env.dm(user)
        assert message["updates"] >= 1 and buttons(message) == [] and "Decided: approved" in text_of(message)
        assert violations(message) == []
    # Anna's Slack user was linked to her Entra object id because her Slack e-mail is her address; audited
    assert IdentityMap(env.storage, env.tenant_id, env.cipher).oid_of(slack_external(env.team, U_ANNA)) == ANNA
    linked = [e for e in env.audit.records() if e.kind == "identity_linked"]
    assert [e.data["how"] for e in linked] == ["slack-email"]


def test_reject_opens_the_modal_and_the_comment_is_required_and_recorded(env: Env):
    gate = env.submit()
    assert env.post(env.button(gate, U_PIET, REJECT_ACTION)) is None
    (opened,) = env.slack.views
    assert (
        opened["trigger_id"] == sample("block_actions")["trigger_id"] and opened["view"]["callback_id"] == REJECT_MODAL
    )
    assert violations(opened["view"], modal=True) == []

    empty = env.post(env.modal_submit(gate, U_PIET, ""))
    assert empty == {
        "response_action": "errors",
        "errors": {COMMENT_BLOCK: "Say why you reject: a comment is required."},
    }
    assert env.work() == [] and env.gates.runner.status(gate).runtime_status == "Running"

    assert env.post(env.modal_submit(gate, U_PIET, "No change window tonight")) is None
    assert env.work() == ["voted"]
    status = env.gates.runner.status(gate)
    assert status.output["status"] == "rejected" and env.callbacks() == ["rejected"]
    votes = env.gates.services.gates(env.tenant_id).votes(gate)
    assert [(v.voter_id, v.decision.value, v.comment) for v in votes] == [(PIET, "reject", "No change window tonight")]


def test_forged_stale_and_foreign_workspace_requests_are_refused_and_nothing_is_queued(env: Env):
    gate = env.submit()
    press = env.button(gate, U_ANNA, APPROVE_ACTION)
    with pytest.raises(Unauthenticated):  # forged: signed with another secret
        env.post(press, secret="not-the-signing-secret")
    with pytest.raises(Unauthenticated):  # stale: signed six minutes ago
        env.post(press, at=int(time.time()) - 360)
    with pytest.raises(Unauthenticated):  # another workspace (registered nowhere), validly signed
        env.post(env.button(gate, U_ANNA, APPROVE_ACTION, team="TOTHERTEAM1"))
    mixed = copy.deepcopy(press)
    mixed["user"]["team_id"] = "TOTHERTEAM1"
    with pytest.raises(InvalidInput) as refused:  # a payload naming two workspaces
        env.post(mixed)
    assert refused.value.field == "user.team_id"
    tampered = form_body(press)
    headers = sign(SIGNING_SECRET, tampered)
    with pytest.raises(Unauthenticated):  # the body changed after signing
        env.routes.interactions(tampered.replace(b"approve", b"reject"), headers)
    assert env.work() == [] and env.gates.runner.status(gate).runtime_status == "Running"


def test_the_requesters_own_click_is_refused_with_the_reason_shown(env: Env):
    gate = env.submit()
    env.post(env.button(gate, U_DEV, APPROVE_ACTION))
    assert env.work() == ["refused:self-approval"]
    (told,) = env.slack.ephemeral
    assert told["user"] == U_DEV and "Not recorded." in told["text"] and "own" in told["text"].lower()
    assert env.gates.runner.status(gate).runtime_status == "Running" and env.callbacks() == []
    assert buttons(env.dm(U_ANNA)) == [APPROVE_ACTION, REJECT_ACTION]


def test_an_unlinked_slack_user_cannot_vote_and_is_told_how_to_link(env: Env):
    gate = env.submit()
    env.slack.messages[(env.slack.dm_channel(U_EVE), "1900000999.000999")] = {"text": "", "blocks": [], "updates": 0}
    env.post(env.button(gate, U_EVE, APPROVE_ACTION))
    assert env.work() == ["unlinked"]
    (told,) = env.slack.ephemeral
    assert told["user"] == U_EVE and f"slack:user:{env.team}/{U_EVE}" in told["text"]
    assert env.gates.services.gates(env.tenant_id).votes(gate) == []
    assert env.gates.runner.status(gate).runtime_status == "Running"


def test_url_verification_answers_the_challenge_only_when_signed(env: Env):
    body = json.dumps(sample("url_verification")).encode()
    assert env.routes.events(body, sign(SIGNING_SECRET, body)) == {"challenge": sample("url_verification")["challenge"]}
    with pytest.raises(Unauthenticated):
        env.routes.events(body, sign("forged", body))


def test_the_queued_decision_is_sealed_and_a_tampered_one_does_not_open(env: Env):
    gate = env.submit()
    env.post(env.button(gate, U_PIET, REJECT_ACTION))
    env.post(env.modal_submit(gate, U_PIET, "No change window tonight"))
    (message,) = env.queue.peek_messages()
    raw = base64.b64decode(message.content)
    assert b"No change window" not in raw and U_PIET.encode() not in raw  # who and why are sealed
    document = json.loads(raw)
    moved = json.dumps({**document, "id": "f" * 32}).encode()  # the sealed part under another item id
    with pytest.raises(SealedDataUnreadable):
        read_queue_message(env.cipher, moved)
    assert read_queue_message(env.cipher, raw)[1].comment == "No change window tonight"


def test_a_click_on_a_gate_that_is_not_the_workspace_tenants_is_refused(env: Env):
    gate = env.submit()
    press = env.button(gate, U_ANNA, APPROVE_ACTION)
    press["actions"][0]["value"] = "gate-of-another-tenant"
    env.post(press)
    assert env.work() == ["refused:gate-not-found"]
    (told,) = env.slack.ephemeral
    assert told["user"] == U_ANNA and "No gate" in told["text"]
    assert env.gates.services.gates(env.tenant_id).votes(gate) == []


def test_an_outage_behind_the_decision_service_is_raised_so_the_queue_retries(env: Env):
    gate = env.submit()
    env.post(env.button(gate, U_ANNA, APPROVE_ACTION))
    (message,) = env.queue.receive_messages()
    tenant_id, interaction = read_queue_message(env.cipher, base64.b64decode(message.content))

    class Down:
        def decide(self, *args: Any) -> Any:
            raise DependencyUnavailable("storage is down", code="storage-unavailable")

        def system_view(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("not reached")

    with pytest.raises(DependencyUnavailable):  # not swallowed as a refusal: the host retries the message
        env.votes.handle(tenant_id, interaction, Down())
    assert env.slack.ephemeral == []  # nobody was told "not recorded" for a decision that will be retried
    assert env.votes.handle(tenant_id, interaction, env.gates.decisions) == "voted"  # the retry


# --- votes from other channels, L1 notices and L3 tasks (issue 19 follow-up) ----------------------------------


def api_vote(env: Env, gate: str, oid: str, upn: str, decision: str, comment: str = "") -> int:
    """A vote through the decision route's service (what `POST /api/approvals/{id}/decisions` runs)."""
    principal = Principal(oid=oid, tid=TID, upn=upn, auth="bearer")
    body = json.dumps({"decision": decision, "comment": comment}).encode()
    status, _ = env.gates.decisions.decide(gate, principal, body)
    return status


def channel_post(env: Env) -> dict[str, Any]:
    (message,) = env.slack.messages_in(CHANNEL)
    return message


@pytest.mark.parametrize("env", [{"quorum": 2}], indirect=True)
def test_a_vote_from_the_api_updates_the_slack_dms_and_channel_post_before_the_gate_closes(env: Env):
    gate = env.submit()
    assert "Votes: none yet." in text_of(channel_post(env)) and buttons(channel_post(env)) == [
        APPROVE_ACTION,
        REJECT_ACTION,
    ]
    assert api_vote(env, gate, ANNA, ANNA_UPN, "approve", "looks fine") == 202
    assert env.slack.messages_in(CHANNEL)[0]["updates"] == 0  # the vote's own path never calls Slack
    env.gates.runner.run_until_idle()  # the chain counts it and still waits for the second approval

    assert env.gates.runner.status(gate).runtime_status == "Running" and env.callbacks() == []
    shown = f"approve by {ANNA}"
    post, piet, anna = channel_post(env), env.dm(U_PIET), env.dm(U_ANNA)
    for message in (post, piet, anna):  # every message shows the vote so far, within Block Kit's limits
        assert message["updates"] == 1 and shown in text_of(message) and "looks fine" in text_of(message)
        assert violations(message) == [] and "Decided:" not in text_of(message)
    assert buttons(post) == [APPROVE_ACTION, REJECT_ACTION]  # others in the channel may still vote
    assert buttons(piet) == [APPROVE_ACTION, REJECT_ACTION]  # Piet has not voted yet
    assert buttons(anna) == [] and "You approved this request." in text_of(anna)  # Anna has

    assert api_vote(env, gate, PIET, PIET_UPN, "approve") == 202
    env.gates.runner.run_until_idle()
    assert env.gates.runner.status(gate).output["status"] == "approved" and env.callbacks() == ["approved"]
    for message in (channel_post(env), env.dm(U_PIET), env.dm(U_ANNA), env.dm(U_DEV)):
        assert buttons(message) == [] and "Decided: approved" in text_of(message) and violations(message) == []


@pytest.mark.parametrize("env", [{"quorum": 2}], indirect=True)
def test_a_slack_vote_then_the_chains_update_keep_the_voters_dm_without_buttons(env: Env):
    gate = env.submit()
    env.post(env.button(gate, U_ANNA, APPROVE_ACTION))
    assert env.work() == ["voted"]  # the Slack vote's own update, then the chain's update for every channel
    anna, piet = env.dm(U_ANNA), env.dm(U_PIET)
    assert anna["updates"] == 2 and buttons(anna) == [] and "You approved this request." in text_of(anna)
    assert buttons(piet) == [APPROVE_ACTION, REJECT_ACTION] and f"approve by {ANNA}" in text_of(piet)
    assert env.gates.runner.status(gate).runtime_status == "Running"


@pytest.mark.parametrize("env", [{"quorum": 2}], indirect=True)
def test_slack_down_during_an_api_vote_still_counts_it_answers_the_pipeline_and_logs(
    env: Env, caplog: pytest.LogCaptureFixture
):
    gate = env.submit()
    env.slack.stop()  # Slack is unreachable from here on
    caplog.set_level(logging.WARNING, logger="gatekeeper.slack")

    started = time.monotonic()
    assert api_vote(env, gate, ANNA, ANNA_UPN, "approve") == 202  # counted and answered
    env.gates.runner.run_until_idle()
    took = time.monotonic() - started
    assert env.gates.runner.status(gate).runtime_status == "Running"
    assert [v.voter_id for v in env.gates.services.gates(env.tenant_id).votes(gate)] == [ANNA]
    failures = [r.getMessage() for r in caplog.records if "updating a message of " + gate in r.getMessage()]
    assert len(failures) == 1  # one unreachable Slack ends the round: no timeout per message
    assert any("still show an earlier state" in r.getMessage() for r in caplog.records)
    assert took < 10, took

    assert api_vote(env, gate, PIET, PIET_UPN, "approve") == 202
    env.gates.runner.run_until_idle()
    status = env.gates.runner.status(gate)
    assert status.runtime_status == "Completed" and status.output["status"] == "approved"
    assert env.callbacks() == ["approved"]  # the pipeline was answered although Slack never was


def test_an_l1_notice_reaches_slack_without_vote_buttons_and_can_be_flagged_for_rollback(env: Env):
    gate = env.submit("staging")
    assert env.gates.runner.status(gate).output["status"] == "approved" and env.callbacks() == ["approved"]
    for message in (env.dm(U_OPS), channel_post(env)):  # the operator (named by UPN) and the channel
        assert buttons(message) == [ACKNOWLEDGE_ACTION, FLAG_ROLLBACK_ACTION] and violations(message) == []
        assert message["text"].startswith("L1 executed, please review:")
        assert "ran without approval (level L1)" in text_of(message) and "Approval page" in text_of(message)
        assert "Votes:" not in text_of(message) and "contoso/webshop" in text_of(message)
    assert env.slack.messages_in(env.slack.dm_channel(U_ANNA)) == []  # approvers are not asked at L1
    assert MessageStore(env.storage, env.tenant_id, env.cipher).of_gate(gate) == []  # nothing to update later

    (post_ts,) = [t for (c, t) in env.slack.messages if c == CHANNEL]
    env.post(env.button(gate, U_ANNA, FLAG_ROLLBACK_ACTION, channel=CHANNEL))  # in the channel, not notified
    env.post(env.button(gate, U_OPS, FLAG_ROLLBACK_ACTION))  # the operator, from their DM
    env.post(env.button(gate, U_OPS, FLAG_ROLLBACK_ACTION))  # twice
    assert env.work() == ["refused:not-notified", "flag_rollback", "refused:already-recorded"]
    told = [(e["user"], e["text"]) for e in env.slack.ephemeral]
    assert told[0][0] == U_ANNA and "Not for you" in told[0][1]
    assert told[1] == (U_OPS, "Recorded: flagged for rollback.") and "Already recorded" in told[2][1]
    follow_ups = [r.data for r in env.audit.records() if r.instance_id == gate and r.kind == "follow_up"]
    assert [(f["action"], f["upn"], f["channel"]) for f in follow_ups] == [("flag_rollback", OPS_UPN, "slack")]
    overrides = [r for r in env.audit.records() if r.instance_id == gate and r.kind == "override"]
    assert [(r.actor, r.data["kind"]) for r in overrides] == [(OPS, "flagged_for_rollback")]
    assert post_ts and env.slack.messages[(CHANNEL, post_ts)]["updates"] == 0
    ops = env.dm(U_OPS)  # the message the operator acted on, updated in place: who did what, no buttons
    assert ops["updates"] == 1 and buttons(ops) == [] and violations(ops) == []
    assert f"Flagged for rollback by {OPS_UPN} at" in text_of(ops)


def test_an_l1_notice_is_acknowledged_from_slack_and_the_message_then_says_who_without_buttons(env: Env):
    gate = env.submit("staging")
    (post_ts,) = [t for (c, t) in env.slack.messages if c == CHANNEL]
    env.post(env.button(gate, U_PIET, ACKNOWLEDGE_ACTION, channel=CHANNEL))  # a channel member, not notified
    env.post(env.button(gate, U_OPS, ACKNOWLEDGE_ACTION, channel=CHANNEL))  # the operator, in the channel
    assert env.work() == ["refused:not-notified", "acknowledge"]
    told = [(e["user"], e["text"]) for e in env.slack.ephemeral]
    assert told[0][0] == U_PIET and "Not for you" in told[0][1] and "webshop" not in told[0][1]
    assert told[1] == (U_OPS, "Recorded: acknowledged.")
    post = env.slack.messages[(CHANNEL, post_ts)]
    assert post["updates"] == 1 and buttons(post) == [] and violations(post) == []
    assert f"Acknowledged by {OPS_UPN} at" in text_of(post) and "L1 executed, please review" in text_of(post)
    assert buttons(env.dm(U_OPS)) == [ACKNOWLEDGE_ACTION, FLAG_ROLLBACK_ACTION]  # the other message is as sent
    follow_ups = [r.data for r in env.audit.records() if r.instance_id == gate and r.kind == "follow_up"]
    assert [(f["action"], f["upn"], f["channel"]) for f in follow_ups] == [("acknowledge", OPS_UPN, "slack")]
    assert not [r for r in env.audit.records() if r.instance_id == gate and r.kind == "override"]


def test_an_l3_task_is_marked_done_from_slack_with_a_note_and_minutes_through_the_modal(env: Env):
    gate = env.submit("production", ActionKind.SECRET_ACCESS)
    assert buttons(env.dm(U_OPS)) == [MARK_DONE_ACTION]
    assert env.post(env.button(gate, U_OPS, MARK_DONE_ACTION)) is None  # opens the modal on the request path
    (opened,) = env.slack.views
    assert opened["view"]["callback_id"] == MARK_DONE_MODAL and violations(opened["view"], modal=True) == []
    assert opened["view"]["private_metadata"].startswith(f"{gate}|")

    assert env.post(env.done_submit(gate, U_OPS, "", "30")) == {  # the note is required: said in the modal
        "response_action": "errors",
        "errors": {NOTE_BLOCK: "Say what was done: a note is required to mark the task done."},
    }
    for wrong in ("0", "1441", "2.5", "99999999999999999999"):  # out of range: said in the modal, naming it
        answer = env.post(env.done_submit(gate, U_OPS, "rotated", wrong))
        assert set(answer["errors"]) == {MINUTES_BLOCK} and answer["response_action"] == "errors"
        assert "whole number of minutes from 1 to 1440" in answer["errors"][MINUTES_BLOCK]
    assert env.work() == []  # nothing was queued, nothing recorded
    assert not [r for r in env.audit.records() if r.instance_id == gate and r.kind == "follow_up"]

    env.post(env.done_submit(gate, U_ANNA, "done it", "10", channel=CHANNEL))  # not someone the task went to
    env.post(env.done_submit(gate, U_OPS, "secret rotated by hand, CHG-1042", "45"))
    env.post(env.done_submit(gate, U_OPS, "again", "5"))  # twice
    assert env.work() == ["refused:not-notified", "mark_done", "refused:already-recorded"]
    told = [(e["user"], e["text"]) for e in env.slack.ephemeral]
    assert told[0][0] == U_ANNA and "Not for you" in told[0][1]
    assert told[1] == (U_OPS, "Recorded: marked done (45 min).") and "Already recorded" in told[2][1]
    ops = env.dm(U_OPS)
    assert ops["updates"] == 1 and buttons(ops) == [] and violations(ops) == []
    assert f"Marked done by {OPS_UPN} at" in text_of(ops) and "(45 min): secret rotated by hand, CHG-1042" in text_of(
        ops
    )
    assert buttons(channel_post(env)) == [MARK_DONE_ACTION] and channel_post(env)["updates"] == 0
    follow_ups = [r.data for r in env.audit.records() if r.instance_id == gate and r.kind == "follow_up"]
    assert [(f["action"], f["note"], f["minutes"], f["channel"], f["psa_time_entry"]) for f in follow_ups] == [
        ("mark_done", "secret rotated by hand, CHG-1042", 45, "slack", False)  # no PSA here: the audit only
    ]


def test_mark_done_on_an_l1_notice_is_refused_as_not_applicable(env: Env):
    gate = env.submit("staging")  # an executed L1 change, not a task
    env.post(env.done_submit(gate, U_OPS, "nothing to do", "5"))
    assert env.work() == ["refused:not-applicable"]
    (told,) = env.slack.ephemeral
    assert told["user"] == U_OPS and "Not applicable" in told["text"]
    assert not [r for r in env.audit.records() if r.instance_id == gate and r.kind == "follow_up"]
    assert buttons(env.dm(U_OPS)) == [ACKNOWLEDGE_ACTION, FLAG_ROLLBACK_ACTION] and env.dm(U_OPS)["updates"] == 0


def test_an_l3_task_reaches_slack_as_a_message_without_vote_buttons(env: Env):
    gate = env.submit("production", ActionKind.SECRET_ACCESS)
    assert env.gates.runner.status(gate).output["status"] == "human_task"
    for message in (env.dm(U_OPS), channel_post(env)):  # no vote buttons; the task's Mark done only
        assert buttons(message) == [MARK_DONE_ACTION] and violations(message) == []
        assert message["text"].startswith("L3 human action required:")
        assert "carry it out by hand" in text_of(message) and "Votes:" not in text_of(message)
    assert MessageStore(env.storage, env.tenant_id, env.cipher).of_gate(gate) == []
