"""The registered Slack triggers (functions/slack.py): `POST /api/slack/interactions`, `POST /api/slack/events`
and the `slack-interactions` queue trigger, driven as the Functions host calls them, with the real services over
Azurite, the local Slack Web API (devstack/slack.py) behind the Slack notifier and the local Durable HTTP API
behind the decision service. What each answer says (status, problem+json type and field), what was queued, what
reached Slack, which dead letter was kept and why, which vote reached the orchestration."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import BinaryBase64DecodePolicy

from devstack.durable_api import DurableApiServer
from devstack.slack import LocalSlack, form_body, sign
from functions.slack import SLACK_INTERACTIONS_QUEUE
from gatekeeper.contracts.gate import chain_instance_id
from gatekeeper.gates.store import GateStore
from gatekeeper.ingest import redelivery
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.services import Services, set_services
from gatekeeper.slack.blocks import (
    APPROVE_ACTION,
    COMMENT_ACTION,
    COMMENT_BLOCK,
    MARK_DONE_MODAL,
    MAX_COMMENT,
    NOTE_ACTION,
    NOTE_BLOCK,
    REJECT_ACTION,
    REJECT_MODAL,
)
from gatekeeper.slack.channel import SlackNotifier, slack_external
from gatekeeper.slack.edge import MAX_BODY_BYTES, Interaction, queue_message, read_queue_message
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.identities import IdentityLink
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.slack_settings import SlackSettings
from tests.support.approval_gates import store_waiting_gate
from tests.support.gatekeeper_env import GatekeeperEnv, http_function, make_env, problem
from tests.support.outage import dead_port, storage_connection_string
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
SIGNING_SECRET = "slack-signing-secret-for-trigger-tests"
BOT_TOKEN = "xoxb-slack-bot-token-for-trigger-tests"
ANNA = "0000000a-0000-4000-8000-00000000000a"
U_ANNA, U_EVE = "UANNA0001", "UEVE00004"
PROBLEM_BASE = "https://gatekeeper.dev/problems/"
SLACK_ENTRA_TENANT = "5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"  # the Slack tenant's own Entra tenant


def sample(name: str) -> dict[str, Any]:
    document = json.loads((FIXTURES / f"{name}.json").read_text())
    document.pop("_source")
    return document


@dataclass
class Rig:
    env: GatekeeperEnv
    slack: LocalSlack
    durable: DurableApiServer
    tenant_id: str
    team: str

    # --- requests as Slack sends them ---

    def press(self, gate: str, action_id: str = APPROVE_ACTION, user: str = U_ANNA) -> dict[str, Any]:
        payload = sample("block_actions")
        payload["team"]["id"] = self.team
        payload["user"].update(id=user, team_id=self.team)
        payload["channel"] = {"id": "D" + user, "name": "directmessage"}
        payload["container"].update(message_ts="1900000001.000001", channel_id="D" + user)
        payload["actions"][0].update(action_id=action_id, value=gate, block_id="decision")
        return payload

    def submit(
        self, gate: str, callback_id: str, values: dict[str, Any], metadata: str | None = None
    ) -> dict[str, Any]:
        payload = sample("view_submission")
        payload["team"]["id"] = payload["view"]["team_id"] = self.team
        payload["user"].update(id=U_ANNA, team_id=self.team)
        meta = f"{gate}|D{U_ANNA}|1900000001.000001" if metadata is None else metadata
        payload["view"].update(callback_id=callback_id, private_metadata=meta, state={"values": values})
        return payload

    def interactions(self, body: bytes, headers: dict[str, str] | None = None) -> func.HttpResponse:
        request = func.HttpRequest(
            "POST",
            "http://localhost/api/slack/interactions",
            headers=sign(SIGNING_SECRET, body) if headers is None else headers,
            body=body,
        )
        return http_function("slack_interactions")(request)

    def post(self, payload: dict[str, Any]) -> func.HttpResponse:
        return self.interactions(form_body(payload))

    def events(self, document: dict[str, Any] | bytes, secret: str = SIGNING_SECRET) -> func.HttpResponse:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        request = func.HttpRequest("POST", "http://localhost/api/slack/events", headers=sign(secret, body), body=body)
        return http_function("slack_events")(request)

    # --- the queue ---

    def queued(self, gate: str) -> list[Interaction]:
        """This test's queued decisions (the queue is shared by the tests), opened as the trigger opens them."""
        queue = self.env.storage.queue(SLACK_INTERACTIONS_QUEUE, message_decode_policy=BinaryBase64DecodePolicy())
        found = []
        for message in queue.peek_messages(max_messages=32):
            with contextlib.suppress(Exception):
                tenant_id, interaction = read_queue_message(self.env.services.sealer, message.content)
                if tenant_id == self.tenant_id and interaction.instance_id == gate:
                    found.append(interaction)
        return found

    def work(self, body: bytes, *, inserted: datetime | None = None) -> None:
        """The queue trigger on one message, as the host runs it (async, with the durable client binding)."""
        message = QueueMessage(
            id="m-" + uuid.uuid4().hex[:8], body=body, insertion_time=inserted or datetime.now(UTC), dequeue_count=1
        )
        run_on_worker(http_function("slack_decisions")(message, client=self.durable.client_binding))

    def deferred(self, body: bytes, seconds: float) -> list[str]:
        """Wrapped copies of `body` put back on the queue within `seconds` (taken off the queue)."""
        queue = self.env.storage.queue(SLACK_INTERACTIONS_QUEUE, message_decode_policy=BinaryBase64DecodePolicy())
        copies: list[str] = []
        deadline = time.monotonic() + seconds
        while not copies and time.monotonic() < deadline:
            for queued in queue.receive_messages(max_messages=32, visibility_timeout=1):
                if redelivery.unwrap(queued.content.decode()) == body.decode():
                    queue.delete_message(queued)
                    copies.append(queued.content.decode())
            time.sleep(0.2)
        return copies

    def letters(self, text: str) -> list[str]:
        return [d.reason for d in DeadLetters(self.env.storage).list(SLACK_INTERACTIONS_QUEUE) if d.message == text]

    # --- gates ---

    def gate(self, approvers: tuple[str, ...] = (ANNA,)) -> str:
        gate_id = store_waiting_gate(self.env.storage, self.tenant_id, self.env.services.sealer, approvers)
        self.durable.instances[chain_instance_id(gate_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
        return gate_id

    def link(self, user: str, oid: str) -> None:
        identities = self.env.services.identities(self.tenant_id)
        link = IdentityLink(external=slack_external(self.team, user), oid=oid, note="test")
        identities.link(link, self.env.services.audit_for(self.tenant_id), by="admin")


@pytest.fixture
def rig(storage_connection_string: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setattr(redelivery, "DEFER_FIRST", timedelta(seconds=1))  # the product waits 30 s first
    tenant_id = "s" + uuid.uuid4().hex[:12]
    team = "T" + uuid.uuid4().hex[:10].upper()
    own = f"GK_{tenant_id.upper()}_"
    record = TenantRecord(
        tenant_id=tenant_id,
        display_name="Slack Co",
        entra_tenant_ids=(SLACK_ENTRA_TENANT,),
        slack=SlackSettings(
            team_id=team,
            bot_token=f"env:{own}SLACK_BOT",
            signing_secrets=(f"env:{own}SLACK_SIGNING",),
            link_by_email=False,
        ),
    )
    environ = {f"{own}SLACK_BOT": BOT_TOKEN, f"{own}SLACK_SIGNING": SIGNING_SECRET}
    env = make_env(storage_connection_string, tmp_path / "keys", extra_tenants=(record,), extra_environ=environ)
    users = {U_ANNA: {"email": "anna@contoso.com"}, U_EVE: {"email": "eve@elsewhere.example"}}
    with LocalSlack(BOT_TOKEN, team, users) as slack, DurableApiServer() as durable:
        services = env.services
        services.__dict__["slack"] = SlackNotifier(  # the product's notifier, pointed at the local Web API
            tenants=services.slack_tenants,
            storage=services.storage,
            cipher=services.sealer,
            api_url=slack.api_url,
        )
        services.user_directory = None
        with contextlib.suppress(ResourceExistsError):  # Bicep creates it in Azure
            env.storage.queue(SLACK_INTERACTIONS_QUEUE).create_queue()
        set_services(services)
        try:
            yield Rig(env, slack, durable, tenant_id, team)
        finally:
            set_services(None)


# --- POST /api/slack/interactions ----------------------------------------------------------------------------


def test_a_signed_approve_click_is_answered_with_an_empty_200_and_queued_sealed_for_the_worker(rig: Rig):
    gate = rig.gate()
    response = rig.post(rig.press(gate))
    assert response.status_code == 200 and response.get_body() == b""
    (queued,) = rig.queued(gate)
    assert (queued.kind, queued.team_id, queued.user_id, queued.channel) == ("approve", rig.team, U_ANNA, "D" + U_ANNA)
    assert rig.durable.instances[chain_instance_id(gate)].get("events") is None  # nothing decided on the request


def test_a_forged_signature_is_answered_401_problem_json_and_nothing_is_queued(rig: Rig):
    gate = rig.gate()
    body = form_body(rig.press(gate))
    response = rig.interactions(body, sign("not-the-signing-secret", body))
    assert response.status_code == 401 and response.headers.get("WWW-Authenticate")
    document = problem(response)
    assert document["type"] == PROBLEM_BASE + "slack-signature"
    assert document["instance"] == "/api/slack/interactions"
    assert rig.queued(gate) == []


def test_oversized_headers_are_refused_431_before_the_body_is_read(rig: Rig):
    gate = rig.gate()
    body = form_body(rig.press(gate))
    headers = {**sign(SIGNING_SECRET, body), "X-Padding": "x" * 70_000}
    response = rig.interactions(body, headers)
    assert response.status_code == 431 and problem(response)["type"] == PROBLEM_BASE + "header-too-large"
    assert rig.queued(gate) == []


def test_a_body_over_the_limit_is_refused_413_and_nothing_is_queued(rig: Rig):
    body = b"payload=" + b"x" * MAX_BODY_BYTES
    response = rig.interactions(body)
    assert response.status_code == 413 and problem(response)["type"] == PROBLEM_BASE + "body-too-large"


def test_the_reject_button_opens_the_modal_in_slack_on_the_request_path_and_queues_nothing(rig: Rig):
    gate = rig.gate()
    response = rig.post(rig.press(gate, REJECT_ACTION))
    assert response.status_code == 200 and response.get_body() == b""
    (opened,) = rig.slack.views
    assert opened["view"]["callback_id"] == REJECT_MODAL
    assert opened["view"]["private_metadata"] == f"{gate}|D{U_ANNA}|1900000001.000001"
    assert rig.queued(gate) == []


def test_an_empty_reject_comment_is_answered_in_the_modal_as_json(rig: Rig):
    gate = rig.gate()
    values = {COMMENT_BLOCK: {COMMENT_ACTION: {"type": "plain_text_input", "value": "  "}}}
    response = rig.post(rig.submit(gate, REJECT_MODAL, values))
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert json.loads(response.get_body()) == {
        "response_action": "errors",
        "errors": {COMMENT_BLOCK: "Say why you reject: a comment is required."},
    }
    assert rig.queued(gate) == []


def test_tables_down_answers_503_with_retry_after_not_a_500(rig: Rig, azurite: Any):
    gate = rig.gate()
    body = form_body(rig.press(gate))
    cold_worker_with_tables_down(rig, azurite)  # the tenant registry cannot be read
    response = rig.interactions(body)
    assert response.status_code == 503 and response.headers.get("Retry-After")
    document = problem(response)
    assert document["type"] == PROBLEM_BASE + "dependency-unavailable" and "Traceback" not in json.dumps(document)


# --- POST /api/slack/events ----------------------------------------------------------------------------------


def test_url_verification_through_the_events_route_answers_the_challenge_as_json(rig: Rig):
    challenge = sample("url_verification")
    response = rig.events(challenge)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert json.loads(response.get_body()) == {"challenge": challenge["challenge"]}
    forged = rig.events(challenge, secret="forged")
    assert forged.status_code == 401 and problem(forged)["instance"] == "/api/slack/events"


# --- the slack-interactions queue trigger --------------------------------------------------------------------


def test_a_queued_approval_of_a_linked_user_reaches_the_orchestration_as_their_vote(rig: Rig):
    gate = rig.gate()
    rig.link(U_ANNA, ANNA)
    interaction = Interaction(
        kind="approve", team_id=rig.team, user_id=U_ANNA, instance_id=gate, channel="D" + U_ANNA, ts="1.000001"
    )
    rig.work(queue_message(rig.env.services.sealer, rig.tenant_id, interaction))
    events = rig.durable.instances[chain_instance_id(gate)].get("events", [])
    assert len(events) == 1 and ANNA in json.dumps(events[0])
    votes = GateStore(rig.env.storage, rig.tenant_id, rig.env.services.sealer).votes(gate)
    assert [(v.voter_id, v.decision.value) for v in votes] == [(ANNA, "approve")]
    assert rig.slack.ephemeral == []  # a recorded vote is not answered with a refusal


def test_a_queued_click_of_an_unlinked_user_is_answered_in_slack_and_no_vote_is_raised(rig: Rig):
    gate = rig.gate()
    interaction = Interaction(kind="approve", team_id=rig.team, user_id=U_EVE, instance_id=gate, channel="D" + U_EVE)
    rig.work(queue_message(rig.env.services.sealer, rig.tenant_id, interaction))
    (told,) = rig.slack.ephemeral
    assert told["user"] == U_EVE and f"slack:user:{rig.team}/{U_EVE}" in told["text"]
    assert rig.durable.instances[chain_instance_id(gate)].get("events") is None


def test_a_tampered_queued_vote_is_dead_lettered_as_an_integrity_failure_and_audited(rig: Rig):
    gate = rig.gate()
    interaction = Interaction(kind="approve", team_id=rig.team, user_id=U_ANNA, instance_id=gate)
    document = json.loads(queue_message(rig.env.services.sealer, rig.tenant_id, interaction))
    moved = json.dumps({**document, "id": "f" * 32})  # the sealed part under another item id
    rig.work(moved.encode())
    (reason,) = rig.letters(moved)
    assert reason.startswith("integrity: does not open")
    audited = [e for e in rig.env.services.audit_for(rig.tenant_id).records() if e.kind == "integrity_failure"]
    assert len(audited) == 1 and audited[0].data["route"] == f"queue:{SLACK_INTERACTIONS_QUEUE}"
    assert rig.durable.instances[chain_instance_id(gate)].get("events") is None
    assert rig.deferred(moved.encode(), seconds=2.5) == []  # retrying cannot help: not put back


@pytest.mark.parametrize(
    ("template", "kind"),
    [
        ("not json at all {marker}", "JsonBoundsError"),  # not a document: the bounded reader's ValueError
        ('{{"v": 1, "tenant": 7, "id": "i", "sealed": "{marker}"}}', "ValueError"),  # a field of the wrong type
    ],
)
def test_an_undecodable_queued_message_is_dead_lettered_at_once_naming_why(rig: Rig, template: str, kind: str):
    text = template.format(marker=uuid.uuid4().hex)
    rig.work(text.encode())
    assert rig.letters(text) == [f"undecodable: {kind}"]
    assert rig.deferred(text.encode(), seconds=2.5) == []  # dead-lettered, not put back


def test_a_sealed_vote_under_another_message_version_is_dead_lettered_not_acted_on(rig: Rig):
    gate = rig.gate()
    rig.link(U_ANNA, ANNA)
    interaction = Interaction(kind="approve", team_id=rig.team, user_id=U_ANNA, instance_id=gate, channel="D" + U_ANNA)
    document = json.loads(queue_message(rig.env.services.sealer, rig.tenant_id, interaction))
    text = json.dumps({**document, "v": 2})  # opens fine; a version this worker does not know
    rig.work(text.encode())
    assert rig.letters(text) == ["undecodable: ValueError"]
    assert rig.durable.instances[chain_instance_id(gate)].get("events") is None


def cold_worker_with_tables_down(rig: Rig, azurite: Any) -> Services:
    """A worker whose tables are unreachable but whose key cache already holds the tenant's data key (it
    sealed the message), so the queued vote opens and the outage is met inside the vote's handling."""
    down = StorageAccount(
        connection_string=storage_connection_string(blob=azurite.blob_port, queue=azurite.queue_port, table=dead_port())
    )
    runtime = Services(
        rig.env.services.settings,
        storage=down,
        sealer=rig.env.services.sealer,
        queue_name=rig.env.services.queue_name,
        checkpoint_signer_factory=None,
    )
    set_services(runtime)
    return runtime


def test_a_queued_vote_meeting_a_table_outage_goes_back_to_its_queue_wrapped_not_toward_poison(rig: Rig, azurite: Any):
    gate = rig.gate()
    body = queue_message(rig.env.services.sealer, rig.tenant_id, Interaction("approve", rig.team, U_ANNA, gate))
    cold_worker_with_tables_down(rig, azurite)
    rig.work(body)  # returns: the host does not count a failed attempt
    assert rig.letters(body.decode()) == []
    (copy,) = rig.deferred(body, seconds=10)
    assert json.loads(copy)[redelivery.DEFERRAL_FIELD]  # wrapped with its deferral note, the vote byte for byte


def test_a_queued_vote_meeting_an_outage_past_the_redelivery_window_is_raised_for_the_hosts_retries(
    rig: Rig, azurite: Any
):
    gate = rig.gate()
    body = queue_message(rig.env.services.sealer, rig.tenant_id, Interaction("approve", rig.team, U_ANNA, gate))
    cold_worker_with_tables_down(rig, azurite)
    first_queued = datetime.now(UTC) - redelivery.DEFER_LIMIT - timedelta(minutes=1)
    with pytest.raises(Exception) as raised:
        rig.work(body, inserted=first_queued)
    assert not isinstance(raised.value, AssertionError)
    assert rig.letters(body.decode()) == []


def test_a_queued_vote_that_cannot_be_opened_past_the_redelivery_window_is_raised_for_the_hosts_retries(
    rig: Rig, azurite: Any, tmp_path: Path
):
    """The tenant's data key cannot be read (its table unreachable, a cold key cache) for longer than the
    redelivery window: raised, so the host's retries and the poison queue apply; not dead-lettered as bad."""
    gate = rig.gate()
    body = queue_message(rig.env.services.sealer, rig.tenant_id, Interaction("approve", rig.team, U_ANNA, gate))
    runtime = cold_worker_with_tables_down(rig, azurite)
    runtime.__dict__["sealer"] = build_cipher(runtime.storage, LocalKeyProvider(str(tmp_path / "keys")))
    first_queued = datetime.now(UTC) - redelivery.DEFER_LIMIT - timedelta(minutes=1)
    with pytest.raises(Exception) as raised:
        rig.work(body, inserted=first_queued)
    assert not isinstance(raised.value, AssertionError)
    assert rig.letters(body.decode()) == []


# --- what the edge refuses or ignores in a signed interaction (gatekeeper/slack/edge.py, routes.py) -----------


def comment(value: Any) -> dict[str, Any]:
    return {COMMENT_BLOCK: {COMMENT_ACTION: {"type": "plain_text_input", "value": value}}}


def test_a_user_that_is_not_an_object_is_refused_422_naming_user(rig: Rig):
    gate = rig.gate()
    payload = rig.press(gate)
    payload["user"] = "UANNA0001"
    response = rig.post(payload)
    assert response.status_code == 422 and problem(response)["field"] == "user"
    assert rig.queued(gate) == []


def test_a_payload_naming_its_workspace_only_as_team_id_is_verified_against_that_workspace(rig: Rig):
    gate = rig.gate()
    payload = rig.press(gate)
    del payload["team"]
    payload["team_id"] = rig.team
    assert rig.post(payload).status_code == 200
    assert [q.kind for q in rig.queued(gate)] == ["approve"]
    payload["team_id"] = "T" + "0" * 10  # registered nowhere: the one 401
    response = rig.post(payload)
    assert response.status_code == 401 and problem(response)["type"] == PROBLEM_BASE + "slack-signature"


def test_a_button_this_app_did_not_send_is_acknowledged_and_ignored(rig: Rig):
    gate = rig.gate()
    response = rig.post(rig.press(gate, "some_other_apps_button"))
    assert response.status_code == 200 and response.get_body() == b""
    assert rig.queued(gate) == [] and rig.slack.views == []


def test_a_submit_of_another_modal_is_acknowledged_and_ignored(rig: Rig):
    gate = rig.gate()
    response = rig.post(rig.submit(gate, "someone-elses-modal", comment("no")))
    assert response.status_code == 200 and response.get_body() == b""
    assert rig.queued(gate) == []


def test_a_reject_comment_over_the_limit_or_not_text_is_refused_422_naming_the_input(rig: Rig):
    gate = rig.gate()
    field = f"view.state.values.{COMMENT_BLOCK}.{COMMENT_ACTION}.value"
    for value in ("x" * (MAX_COMMENT + 1), ["not", "text"]):
        response = rig.post(rig.submit(gate, REJECT_MODAL, comment(value)))
        assert response.status_code == 422 and problem(response)["field"] == field
    assert rig.post(rig.submit(gate, REJECT_MODAL, comment("x" * MAX_COMMENT))).status_code == 200  # the limit
    assert [len(q.comment) for q in rig.queued(gate)] == [MAX_COMMENT]


@pytest.mark.parametrize("metadata", ["", "{gate}", "{gate}|DUANNA0001", "{gate}|DUANNA0001|1900000001.000001|x", None])
def test_private_metadata_that_is_not_the_apps_is_refused_422_naming_it(rig: Rig, metadata: str | None):
    gate = rig.gate()
    payload = rig.submit(gate, REJECT_MODAL, comment("no window"))
    payload["view"]["private_metadata"] = None if metadata is None else metadata.format(gate=gate)
    response = rig.post(payload)
    assert response.status_code == 422 and problem(response)["field"] == "view.private_metadata"
    assert rig.queued(gate) == []


def test_a_mark_done_submit_without_the_minutes_input_is_queued_with_no_time_spent(rig: Rig):
    gate = rig.gate()
    values = {NOTE_BLOCK: {NOTE_ACTION: {"type": "plain_text_input", "value": " rotated by hand "}}}
    assert rig.post(rig.submit(gate, MARK_DONE_MODAL, values)).status_code == 200
    (queued,) = rig.queued(gate)
    assert (queued.kind, queued.comment, queued.minutes) == ("mark_done", "rotated by hand", None)


def test_the_first_click_after_the_queue_went_missing_creates_it_and_is_queued(rig: Rig):
    gate = rig.gate()
    rig.env.storage.queue(SLACK_INTERACTIONS_QUEUE).delete_queue()
    assert rig.post(rig.press(gate)).status_code == 200
    assert [q.kind for q in rig.queued(gate)] == ["approve"]


# --- /api/slack/events -------------------------------------------------------------------------------------


def test_an_event_of_a_registered_workspace_is_acknowledged_as_ignored_and_a_strangers_refused(rig: Rig):
    event = {"type": "event_callback", "team_id": rig.team, "event": {"type": "app_mention"}}
    response = rig.events(event)
    assert response.status_code == 200 and json.loads(response.get_body()) == {"ok": True, "ignored": "event_callback"}
    forged = rig.events(event, secret="not-the-signing-secret")
    assert forged.status_code == 401
    stranger = rig.events({**event, "team_id": "T" + "9" * 10})
    assert stranger.status_code == 401 and problem(stranger)["type"] == PROBLEM_BASE + "slack-signature"


def test_an_events_body_that_is_not_json_is_refused_400_naming_the_body(rig: Rig):
    response = rig.events(b'{"type": "url_verification", "challenge": ')
    assert response.status_code == 400
    assert problem(response)["type"] == PROBLEM_BASE + "malformed-json" and problem(response)["field"] == "body"


@pytest.mark.parametrize("challenge", [None, "", 42, "c" * 201])
def test_url_verification_without_a_usable_challenge_is_refused_422_naming_it(rig: Rig, challenge: Any):
    document = {"type": "url_verification", "token": "x"}
    if challenge is not None:
        document["challenge"] = challenge
    response = rig.events(document)
    assert response.status_code == 422 and problem(response)["field"] == "challenge"


def test_an_events_body_over_the_limit_is_refused_413(rig: Rig):
    response = rig.events(json.dumps({"type": "x", "pad": "y" * MAX_BODY_BYTES}).encode())
    assert response.status_code == 413 and problem(response)["type"] == PROBLEM_BASE + "body-too-large"


# --- queued items that open but are not a decision ------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        ["a", "list"],  # not an object
        {"kind": "reject", "team_id": "T0001", "user_id": "U0001", "instance_id": "gate-1"},  # the button, not a vote
        {"kind": "delete_everything", "team_id": "T0001", "user_id": "U0001", "instance_id": "gate-1"},
    ],
)
def test_a_sealed_item_that_is_not_a_slack_decision_is_dead_lettered_not_acted_on(rig: Rig, data: Any):
    item = uuid.uuid4().hex
    sealed = rig.env.services.sealer.seal_json(rig.tenant_id, "SlackInteractions", rig.tenant_id, item, data)
    text = json.dumps({"v": 1, "tenant": rig.tenant_id, "id": item, "sealed": sealed})
    rig.work(text.encode())
    assert rig.letters(text) == ["undecodable: ValueError"]
    assert rig.slack.ephemeral == []
