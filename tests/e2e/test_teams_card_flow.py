"""A gate approved from a Teams card, end to end: the real orchestrators in the local runner, the real Agents
SDK behind the bot, Bot Framework tokens from the local issuer, the local Bot Connector and Graph, Azurite.

A stage opens -> each approver gets the card in a 1:1 chat (the app installed through Graph for the one who
lacked it) -> an approver presses Approve (an `adaptiveCard/action` invoke signed as the Teams service signs
it) -> the decision service decides -> the orchestration gets the vote -> the pipeline is called back -> every
card becomes the read-only summary; a late approver's click gets the "already decided" card."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.bot_connector import LocalBotConnector
from devstack.botframework import (
    CHANNEL_SERVICE_APP_ID,
    LocalBotFrameworkIssuer,
    LocalClientCredential,
    card_action_activity,
)
from devstack.gates import LocalGates, local_gates
from devstack.graph import LocalGraphServer
from devstack.runner import ManualClock
from devstack.server import StaticTokenCredential
from devstack.webhook import LocalWebhookReceiver
from functions.http import status_of
from gatekeeper.audit.log import AuditLog
from gatekeeper.errors import GatekeeperError
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
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.teams.auth import BotTokenValidator
from gatekeeper.teams.bot import BotHost
from gatekeeper.teams.install import GraphAppInstaller
from gatekeeper.teams.proactive import CardStore, TeamsCardNotifier

pytestmark = pytest.mark.azurite

TID = "3f6c2a8e-1b7d-4c9e-8a5f-0d2e4b6c8a10"
APP_ID = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
MANIFEST_ID = "0d1c2b3a-4f5e-4a6b-8c7d-9e0f1a2b3c4d"
CATALOG_ID = "e5f6a7b8-0000-4000-8000-00000000cafe"
BOT_SECRET = "local-bot-secret"
GRAPH_TOKEN = "local-graph-token"
WEBHOOK_SECRET = b"webhook-signing-secret-for-card-tests"
ANNA, PIET = (str(uuid.UUID(int=i)) for i in (0xA, 0xB))
DEV_OID = str(uuid.UUID(int=0xDE))
ANNA_UPN = "anna.jansen@contoso.com"
OPS, OPS_UPN = str(uuid.UUID(int=0x0F)), "ops@contoso.com"
START = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)

POLICY = {
    "version": 1,
    "defaults": {
        "level": "L2",
        "approval": {
            "stages": [
                {"name": "cab", "approvers": [ANNA, PIET], "quorum": 1, "timeout": "PT1H", "on_timeout": "reject"}
            ]
        },
    },
    "rules": [
        {"name": "staging", "match": {"environments": ["staging"]}, "level": "L1"},
        {"name": "secrets", "match": {"actions": ["secret_access"]}, "level": "L3"},
        {
            "name": "named-by-upn",
            "match": {"environments": ["prod-upn"]},
            "level": "L2",
            "approval": {"stages": [{"name": "leads", "approvers": [ANNA_UPN], "quorum": 1, "timeout": "PT1H"}]},
        },
    ],
}


@dataclass
class Env:
    gates: LocalGates
    issuer: LocalBotFrameworkIssuer
    connector: LocalBotConnector
    graph: LocalGraphServer
    receiver: LocalWebhookReceiver
    validator: BotTokenValidator
    host: BotHost
    directory: GraphUserDirectory
    followups: FollowUpService
    audit: AuditLog
    storage: StorageAccount
    cipher: Any
    tenant_id: str

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
                actor="dev@contoso.com",
                run_id=uuid.uuid4().hex,
                callback=WebhookCallback(url=self.receiver.url + "/ci/hook"),
                requester_ids=(f"entra:oid:{DEV_OID}",),
            )
        )

    def press(
        self, gate: str, user: str, verb: str = "approve", *, entra_tenant: str | None = None, **inputs: str
    ) -> dict[str, Any]:
        """What Teams sends when `user` presses a button, through the bot as /api/messages runs it; the card
        the user then sees. `entra_tenant`: the Bot Service signs through Entra ID, from that tenant."""
        activity = card_action_activity(
            service_url=self.connector.url + "/",
            app_id=APP_ID,
            user_oid=user,
            tenant_id=TID,
            verb=verb,
            instance_id=gate,
            inputs=inputs,
        )
        token = (
            self.issuer.sign_entra_activity(APP_ID, entra_tenant)
            if entra_tenant
            else self.issuer.sign_activity(APP_ID, activity["serviceUrl"])
        )
        claims = self.validator.validate(f"Bearer {token}", activity["serviceUrl"])
        status, body = asyncio.run(
            self.host.process(
                activity,
                {"Authorization": f"Bearer {token}"},
                claims,
                self.gates.decisions,
                self.directory,
                self.followups,
            )
        )
        assert status == 200 and body["statusCode"] == 200, body
        self.gates.runner.run_until_idle()
        return body["value"]

    def chat_card(self, user: str) -> dict[str, Any]:
        conversation = self.connector.conversation_of(user)
        assert conversation is not None, f"no chat with {user}"
        (card,) = self.connector.cards(conversation)
        return card

    def callbacks(self) -> list[str]:
        return [d["body"]["state"] for d in self.receiver.deliveries if d["body"].get("event") == "gate.completed"]


def texts(card: Any) -> str:
    if isinstance(card, dict):
        own = [card[k] for k in ("text", "title", "value") if isinstance(card.get(k), str)]
        return re.sub(r"\\(.)", r"\1", " ".join(own + [texts(v) for v in card.values() if isinstance(v, dict | list)]))
    if isinstance(card, list):
        return " ".join(texts(v) for v in card)
    return ""


def verbs(card: dict[str, Any]) -> list[str]:
    found = []
    for action in card.get("actions", []):
        found += [action["verb"]] if action.get("verb") else []
        found += verbs(action.get("card", {}))
    return found


@pytest.fixture
def env(azurite, tmp_path_factory) -> Iterator[Env]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path_factory.mktemp("keys"))))
    tenant_id = "t" + uuid.uuid4().hex[:12]
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    policy = load_policy(POLICY)
    with (
        LocalBotFrameworkIssuer() as issuer,
        LocalGraphServer(
            GRAPH_TOKEN,
            not_installed=[PIET],
            users={
                ANNA: {"userPrincipalName": ANNA_UPN, "mail": ANNA_UPN},
                OPS: {"userPrincipalName": OPS_UPN, "mail": OPS_UPN},
            },
        ) as graph,
        LocalWebhookReceiver(WEBHOOK_SECRET) as receiver,
    ):
        issuer.client_secrets[APP_ID] = BOT_SECRET
        with LocalBotConnector(lambda token: issuer.verify_bot_token(token, APP_ID)) as connector:
            connector.not_installed.add(PIET)
            graph.teams_apps[MANIFEST_ID] = CATALOG_ID
            graph.on_install = connector.install
            credential = LocalClientCredential(issuer.token_url, APP_ID, BOT_SECRET)
            client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
            installer = GraphAppInstaller(client, MANIFEST_ID, graph.base_url, http_client=http)
            directory_client, directory_http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
            directory = GraphUserDirectory(directory_client, http_client=directory_http)
            cards = TeamsCardNotifier(
                app_id=APP_ID,
                service_url=connector.url + "/",
                credential=credential,
                storage=storage,
                cipher=cipher,
                entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
                installer=installer,
                base_url="https://gatekeeper.contoso.com",
                directory=directory,
            )
            gates = local_gates(
                storage,
                cipher,
                decider=PolicyDecider(lambda _t: policy),
                audit_for=lambda _t: audit,
                notifier=FanOutNotifier([OutboxNotifier(tmp_path_factory.mktemp("outbox")), cards]),
                callbacks=PipelineCallbacks(
                    webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
                    webhook_secret=lambda _tenant: WEBHOOK_SECRET,
                ),
                entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
                operators_for=lambda _t: (OPS_UPN,),
                clock=ManualClock(START),
                settings=Settings(trust_easyauth_header=False),
                directory=directory,
            )
            try:
                yield Env(
                    gates,
                    issuer,
                    connector,
                    graph,
                    receiver,
                    BotTokenValidator(
                        APP_ID,
                        issuer.metadata_url,
                        tenant_id=TID,
                        allowed_callers=(CHANNEL_SERVICE_APP_ID,),
                        authority_host=issuer.authority_host,
                    ),
                    BotHost(credential, APP_ID, TID),
                    directory,
                    FollowUpService(
                        storage,
                        cipher,
                        entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
                        operators_for=lambda _t: (OPS_UPN,),
                        audit_for=lambda _t: audit,
                    ),
                    audit,
                    storage,
                    cipher,
                    tenant_id,
                )
            finally:
                installer.close()
                directory.close()


def test_an_approval_from_a_card_runs_the_whole_gate_and_closes_every_card(env: Env):
    gate = env.submit()
    assert env.gates.runner.status(gate).runtime_status == "Running" and env.callbacks() == []

    # each approver has the card in a 1:1 chat; Piet lacked the app, which was installed through Graph first
    assert env.graph.installed_apps == {PIET: {CATALOG_ID}}
    for user in (ANNA, PIET):
        card = env.chat_card(user)
        assert verbs(card) == ["approve", "reject"] and "deploy of contoso/webshop (main) to production" in texts(card)
        assert card["refresh"]["userIds"] == [f"8:orgid:{oid}" for oid in sorted([ANNA, PIET])]
    created = env.connector.conversations[env.connector.conversation_of(PIET)]
    assert (
        created["members"] == [{"id": PIET}] and created["tenantId"] == TID and created["bot"]["id"] == f"28:{APP_ID}"
    )
    assert {c.user for c in CardStore(env.storage, env.tenant_id, env.cipher).of_gate(gate)} == {ANNA, PIET}

    answer = env.press(gate, ANNA)  # card action -> decision -> orchestration event
    assert "You approved this request." in texts(answer) and verbs(answer) == []

    status = env.gates.runner.status(gate)  # -> pipeline callback
    assert status.runtime_status == "Completed" and status.output["status"] == "approved"
    assert status.output["chain"]["votes"][0]["voter_id"] == ANNA
    assert env.callbacks() == ["approved"]

    for user in (ANNA, PIET):  # every card became the read-only summary
        card = env.chat_card(user)
        assert verbs(card) == [] and "refresh" not in card and "Decided approved" in texts(card)
        assert f"approve by {ANNA}" in texts(card)

    late = env.press(gate, PIET)  # a second approver after the gate closed
    assert "The gate has already been decided" in texts(late) and verbs(late) == []
    assert env.callbacks() == ["approved"]


@pytest.mark.parametrize("signer", [TID, "f8cdef31-a31e-4b4a-93e4-5f571e91255a"], ids=["bot-tenant", "first-party"])
def test_an_entra_signed_card_action_of_a_managed_identity_bot_runs_the_whole_gate(env: Env, signer: str):
    gate = env.submit()
    answer = env.press(gate, ANNA, entra_tenant=signer)  # Entra-issued token, no serviceurl claim
    assert "You approved this request." in texts(answer) and verbs(answer) == []
    status = env.gates.runner.status(gate)
    assert status.runtime_status == "Completed" and status.output["status"] == "approved"
    assert status.output["chain"]["votes"][0]["voter_id"] == ANNA
    assert env.callbacks() == ["approved"]
    for user in (ANNA, PIET):  # the cards were closed through the Bot Connector with the bot's own token
        card = env.chat_card(user)
        assert verbs(card) == [] and "Decided approved" in texts(card)


def test_the_requesters_own_click_is_refused_with_the_reason_and_changes_nothing(env: Env):
    gate = env.submit()
    answer = env.press(gate, DEV_OID)
    assert "cannot decide on their own deployment" in texts(answer) and verbs(answer) == []
    assert env.gates.runner.status(gate).runtime_status == "Running" and env.callbacks() == []


def test_a_rejection_from_the_card_carries_the_comment_to_the_pipeline(env: Env):
    gate = env.submit()
    answer = env.press(gate, PIET, "reject", reject_comment="the change window is closed")
    assert "You rejected this request." in texts(answer)
    assert env.gates.runner.status(gate).output["status"] == "rejected"
    assert env.callbacks() == ["rejected"]
    assert "Decided rejected" in texts(env.chat_card(ANNA))


def test_an_expired_gate_closes_every_card(env: Env):
    gate = env.submit()
    env.gates.runner.advance(timedelta(minutes=61))
    assert env.gates.runner.status(gate).output["status"] == "rejected"
    for user in (ANNA, PIET):
        card = env.chat_card(user)
        assert verbs(card) == [] and "Decided rejected" in texts(card)
    late = env.press(gate, ANNA)
    assert "already been decided" in texts(late) and verbs(late) == []


def test_an_approver_named_by_upn_gets_the_card_and_is_recognised_by_the_directory(env: Env):
    gate = env.submit("prod-upn")
    card = env.chat_card(ANNA)  # the UPN resolved to an object id through Graph, so the bot could chat
    assert verbs(card) == ["approve", "reject"]
    answer = env.press(gate, ANNA)  # Teams names her by object id only; the directory gives her UPN
    assert "You approved this request." in texts(answer)
    assert env.gates.runner.status(gate).output["status"] == "approved"
    assert env.callbacks() == ["approved"]


def follow_ups(env: Env, gate: str) -> list[dict]:
    return [r.data for r in env.audit.records() if r.instance_id == gate and r.kind == "follow_up"]


def test_an_l1_notice_is_a_card_the_operator_acknowledges_or_flags_for_rollback(env: Env):
    gate = env.submit("staging")
    assert env.gates.runner.status(gate).output["status"] == "approved" and env.callbacks() == ["approved"]
    card = env.chat_card(OPS)  # the operator (named by UPN) got the L1 card
    assert "L1 executed, please review" in texts(card) and verbs(card) == ["acknowledge", "flag_rollback"]
    stranger = env.press(gate, ANNA, "acknowledge")  # not someone the notice went to
    assert "Not for you" in texts(stranger) and "webshop" not in texts(stranger)
    flagged = env.press(gate, OPS, "flag_rollback", note="error rate doubled")
    assert "Recorded: flagged for rollback." in texts(flagged) and verbs(flagged) == ["acknowledge", "flag_rollback"]
    assert "flagged for rollback by " + OPS in texts(flagged)
    again = env.press(gate, OPS, "flag_rollback")
    assert "Already recorded" in texts(again)
    assert [(f["action"], f["note"], f["upn"], f["channel"]) for f in follow_ups(env, gate)] == [
        ("flag_rollback", "error rate doubled", OPS_UPN, "teams")
    ]
    overrides = [r for r in env.audit.records() if r.instance_id == gate and r.kind == "override"]
    assert [(r.actor, r.data) for r in overrides] == [  # automation said "proceed"; a person flagged it: both sides
        (
            OPS,
            {
                "kind": "flagged_for_rollback",
                "rule": overrides[0].data["rule"],
                "recommended": None,  # L1: no recommendation was made
                "decided": "flag_rollback",
                "model_version": None,
                "gate": gate,
            },
        )
    ]
    assert overrides[0].data["rule"] != "(no rule)"


def test_an_l3_task_is_marked_done_with_a_note_and_audited(env: Env):
    gate = env.submit("production", ActionKind.SECRET_ACCESS)
    assert env.gates.runner.status(gate).output["status"] == "human_task"
    card = env.chat_card(OPS)
    assert "L3 human action required" in texts(card) and verbs(card) == ["mark_done"]
    assert "approve" not in verbs(card)
    missing = env.press(gate, OPS, "mark_done")
    assert "say what was done" in texts(missing) and follow_ups(env, gate) == []
    done = env.press(gate, OPS, "mark_done", note="secret rotated by hand, ticket CHG-1042")
    assert "Recorded: marked done." in texts(done) and verbs(done) == []
    assert [f["action"] for f in follow_ups(env, gate)] == ["mark_done"]
    wrong = env.press(gate, OPS, "acknowledge")  # an L3 task is not an L1 notice
    assert "Not applicable" in texts(wrong)


def test_an_l3_task_marked_done_on_the_card_records_the_time_spent_within_bounds(env: Env):
    gate = env.submit("production", ActionKind.SECRET_ACCESS)
    card = env.chat_card(OPS)
    (minutes,) = [b for b in card["body"] if b.get("id") == "minutes"]  # optional, bounded by the card too
    assert minutes["type"] == "Input.Number" and (minutes["min"], minutes["max"]) == (1, 1440)
    assert not minutes.get("isRequired")
    for wrong in ("0", "1441", "2.5", "an hour", "99999999999999999999"):  # refused on the card, naming it
        refused = env.press(gate, OPS, "mark_done", note="rotated", minutes=wrong)
        assert "minutes: time spent must be a whole number of minutes from 1 to 1440" in texts(refused)
    assert follow_ups(env, gate) == []  # nothing recorded by any of them
    done = env.press(gate, OPS, "mark_done", note="secret rotated by hand", minutes="45")
    assert "Recorded: marked done (45 min)." in texts(done) and verbs(done) == []
    assert f"marked done by {OPS} " in texts(done) and "(45 min): secret rotated by hand" in texts(done)
    assert [(f["action"], f["minutes"], f["channel"]) for f in follow_ups(env, gate)] == [("mark_done", 45, "teams")]


# -- the follow-up service every channel calls: who, which gate, what --------------------------------------


def _person(oid: str = OPS, *, tid: str = TID, upn: str | None = OPS_UPN) -> Principal:
    return Principal(oid=oid, tid=tid, upn=upn, auth="bearer")


def _refused(call: Any) -> GatekeeperError:
    with pytest.raises(GatekeeperError) as caught:
        call()
    return caught.value


def test_a_follow_up_names_only_its_own_tenants_existing_gates(env: Env):
    from gatekeeper.gates.store import GateIndex

    gate = env.submit("staging")
    orphan = "gate-" + uuid.uuid4().hex[:40]
    GateIndex(env.storage).put(orphan, env.tenant_id)  # indexed, but no gate record
    cases = {
        "../etc/passwd": "gate-not-found",
        "gate-" + uuid.uuid4().hex[:40]: "gate-not-found",  # in nobody's index
        orphan: "gate-not-found",
    }
    for instance_id, slug in cases.items():
        problem = _refused(lambda i=instance_id: env.followups.act(i, _person(), "acknowledge"))
        assert status_of(problem) == 404 and problem.code == slug
    foreign = _refused(lambda: env.followups.act(gate, _person(tid=str(uuid.uuid4())), "acknowledge"))
    assert (status_of(foreign), foreign.code) == (403, "wrong-tenant")
    assert follow_ups(env, gate) == []


def test_a_follow_up_note_is_bounded_and_minutes_belong_to_a_done_task_only(env: Env):
    gate = env.submit("staging")
    long = _refused(lambda: env.followups.act(gate, _person(), "acknowledge", "x" * 5000))
    assert (status_of(long), long.field) == (422, "note")
    timed = _refused(lambda: env.followups.act(gate, _person(), "acknowledge", "looked", minutes=30))
    assert (status_of(timed), timed.field) == (422, "minutes")
    assert follow_ups(env, gate) == []


def test_an_l2_gate_has_no_follow_up_verbs(env: Env):
    gate = env.submit("production")  # L2: decided by approvals, not by notices
    for verb in ("acknowledge", "flag_rollback", "mark_done"):
        problem = _refused(lambda v=verb: env.followups.act(gate, _person(), v, "note"))
        assert (status_of(problem), problem.code) == (409, "not-applicable")
