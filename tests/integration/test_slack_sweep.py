"""`POST /api/slack/interactions` and its queue worker (gatekeeper/slack/routes.py, edge.py, channel.py): the
edges a hand sweep of planted bugs found untested (docs/mutation.md, second sweep). Same rig as
tests/integration/test_slack_triggers.py: the registered triggers, Azurite, the local Slack Web API."""

from __future__ import annotations

import json

import pytest

from devstack.slack import form_body, sign
from gatekeeper.contracts.gate import chain_instance_id
from gatekeeper.errors import Unauthenticated
from gatekeeper.gates.store import GateStore
from gatekeeper.slack.blocks import MARK_DONE_MODAL, MAX_COMMENT, NOTE_BLOCK, REJECT_ACTION
from gatekeeper.slack.edge import (
    MAX_BODY_BYTES,
    SEAL_TABLE,
    Interaction,
    Tenants,
    authenticate_interaction,
    queue_message,
    read_queue_message,
)
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.slack_settings import SlackSettings
from tests.integration.test_slack_triggers import (  # noqa: F401 - the fixtures are used by name
    ANNA,
    PROBLEM_BASE,
    U_ANNA,
    Rig,
    rig,
    storage_connection_string,
)
from tests.support.approval_gates import store_waiting_gate
from tests.support.gatekeeper_env import problem

pytestmark = pytest.mark.azurite


def test_the_body_bound_is_exact(rig: Rig):
    over = b"payload=" + b"x" * (MAX_BODY_BYTES + 1 - len(b"payload="))
    assert len(over) == MAX_BODY_BYTES + 1
    response = rig.interactions(over)
    assert response.status_code == 413 and problem(response)["type"] == PROBLEM_BASE + "body-too-large"
    at = over[:-1]
    assert rig.interactions(at).status_code != 413
    events = rig.events(b"{" + b" " * (MAX_BODY_BYTES - 1) + b"}")
    assert events.status_code == 413


def test_a_mark_done_input_block_that_is_not_an_object_is_a_422_not_an_in_modal_answer(rig: Rig):
    """Only a refused value INSIDE the note or minutes input is answered in the modal; a block of the wrong shape
    is a request this app did not build."""
    gate = rig.gate()
    response = rig.post(rig.submit(gate, MARK_DONE_MODAL, {NOTE_BLOCK: "not an object"}))
    assert response.status_code == 422 and problem(response)["field"] == f"view.state.values.{NOTE_BLOCK}"
    assert rig.queued(gate) == []


def test_the_workspace_is_team_id_of_the_team_object_whatever_else_the_payload_names(rig: Rig):
    gate = rig.gate()
    payload = rig.press(gate)
    payload["team_id"] = "T" + "0" * 10  # a stray top-level id: the team object names the workspace
    assert rig.post(payload).status_code == 200
    assert [(q.kind, q.team_id) for q in rig.queued(gate)] == [("approve", rig.team)]


def test_a_modal_submitted_in_another_workspace_is_refused_naming_view_team_id(rig: Rig):
    gate = rig.gate()
    payload = rig.submit(gate, "gatekeeper_reject_modal", {})
    payload["view"]["team_id"] = "T" + "9" * 10
    response = rig.post(payload)
    assert response.status_code == 422 and problem(response)["field"] == "view.team_id"
    assert rig.queued(gate) == []


def test_a_click_carrying_two_actions_is_refused_naming_actions(rig: Rig):
    gate = rig.gate()
    payload = rig.press(gate)
    payload["actions"] = [payload["actions"][0], {**payload["actions"][0], "action_id": REJECT_ACTION}]
    response = rig.post(payload)
    assert response.status_code == 422 and problem(response)["field"] == "actions"
    assert rig.queued(gate) == [] and rig.slack.views == []


def test_a_disabled_tenants_workspace_is_refused_like_a_stranger(rig: Rig):
    gate = rig.gate()
    _disable(rig)
    body = form_body(rig.press(gate))
    response = rig.interactions(body)
    assert response.status_code == 401 and problem(response)["type"] == PROBLEM_BASE + "slack-signature"
    assert rig.queued(gate) == []
    assert rig.events({"type": "event_callback", "team_id": rig.team}).status_code == 401


def _disable(rig: Rig) -> None:
    registry = rig.env.services.registry
    record = registry.get(rig.tenant_id)
    assert record is not None
    registry.import_records([record.model_copy(update={"enabled": False})])
    registry.invalidate()


def test_a_disabled_tenants_signing_secret_no_longer_answers_url_verification(rig: Rig):
    challenge = {"token": "x", "challenge": "c" * 20, "type": "url_verification"}
    assert rig.events(challenge).status_code == 200
    _disable(rig)
    assert rig.events(challenge).status_code == 401


def test_a_vote_queued_before_the_tenant_was_disabled_is_not_counted(rig: Rig):
    gate = rig.gate()
    rig.link(U_ANNA, ANNA)
    interaction = Interaction(
        kind="approve", team_id=rig.team, user_id=U_ANNA, instance_id=gate, channel="D" + U_ANNA, ts="1.000001"
    )
    message = queue_message(rig.env.services.sealer, rig.tenant_id, interaction)
    _disable(rig)
    rig.work(message)
    assert rig.durable.instances[chain_instance_id(gate)].get("events") is None
    assert GateStore(rig.env.storage, rig.tenant_id, rig.env.services.sealer).votes(gate) == []


def test_only_a_tenants_own_secret_references_are_read_for_its_workspace():
    """A record stored before the own-reference rule (naming a platform or another tenant's setting) gets
    nothing: its workspace could otherwise be verified with a secret that is not its own."""
    read: list[str] = []

    def secret(ref: str) -> bytes:
        read.append(ref)
        return b"value-of-" + ref.encode()

    slack = SlackSettings.model_construct(
        team_id="TCONTOSO1",
        bot_token="env:GK_API_KEY",
        signing_secrets=("env:GK_OTHER_SLACK_SIGNING", "env:GK_CONTOSO_SLACK_SIGNING"),
    )
    record = TenantRecord.model_construct(tenant_id="contoso", enabled=True, slack=slack)
    tenants = Tenants(lambda _: "contoso", lambda _: record, lambda: [record], secret)
    assert tenants.signing_secrets(record) == [b"value-of-env:GK_CONTOSO_SLACK_SIGNING"]
    assert tenants.bot_token(record) is None
    assert read == ["env:GK_CONTOSO_SLACK_SIGNING"]


_ = (ANNA, U_ANNA)


def _two_workspaces() -> tuple[Tenants, dict[str, TenantRecord]]:
    records = {
        tenant: TenantRecord(
            tenant_id=tenant,
            display_name=tenant,
            slack=SlackSettings(
                team_id=team,
                bot_token=f"env:GK_{tenant.upper()}_SLACK_BOT",
                signing_secrets=(f"env:GK_{tenant.upper()}_SLACK_SIGNING",),
            ),
        )
        for tenant, team in (("alpha", "TALPHA0001"), ("beta", "TBETA00002"))
    }
    teams = {f"slack:team:{r.slack.team_id.lower()}": t for t, r in records.items() if r.slack}
    environ = {f"GK_{t.upper()}_SLACK_SIGNING": f"signing-secret-of-{t}" for t in records}

    def secret(ref: str) -> bytes | None:
        value = environ.get(ref.removeprefix("env:"))
        return value.encode() if value else None

    return Tenants(teams.get, records.get, lambda: list(records.values()), secret), records


def test_a_click_naming_one_workspace_signed_with_another_tenants_secret_is_refused():
    """Tenant beta's Slack admin knows beta's signing secret: it must not sign clicks for alpha's workspace."""
    tenants, _ = _two_workspaces()
    payload = {
        "type": "block_actions",
        "team": {"id": "TALPHA0001"},
        "user": {"id": "UANNA0001", "team_id": "TALPHA0001"},
        "actions": [{"action_id": "gatekeeper_approve", "value": "gate-1"}],
    }
    body = form_body(payload)
    record, _ = authenticate_interaction(body, sign("signing-secret-of-alpha", body), tenants)
    assert record.tenant_id == "alpha"
    with pytest.raises(Unauthenticated):
        authenticate_interaction(body, sign("signing-secret-of-beta", body), tenants)


def test_a_queued_comment_is_read_back_within_its_bound_whatever_was_sealed(rig: Rig):
    item = "i" * 32
    data = {
        "kind": "reject-submitted",
        "team_id": rig.team,
        "user_id": U_ANNA,
        "instance_id": "gate-1",
        "comment": "c" * (MAX_COMMENT + 500),
    }
    sealed = rig.env.services.sealer.seal_json(rig.tenant_id, SEAL_TABLE, rig.tenant_id, item, data)
    body = json.dumps({"v": 1, "tenant": rig.tenant_id, "id": item, "sealed": sealed}).encode()
    tenant_id, interaction = read_queue_message(rig.env.services.sealer, body)
    assert tenant_id == rig.tenant_id and len(interaction.comment) == MAX_COMMENT


def test_a_queued_vote_on_another_tenants_gate_is_refused_as_unknown_and_counts_nowhere(rig: Rig):
    """The gate index names the gate's tenant: a click relayed for this workspace's tenant never reaches
    another tenant's gate, whoever the person is there."""
    other = rig.env.tenant_id  # the env's own tenant (not the Slack one), with ANNA among its approvers
    gate = store_waiting_gate(rig.env.storage, other, rig.env.services.sealer, (ANNA,))
    rig.durable.instances[chain_instance_id(gate)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    rig.link(U_ANNA, ANNA)
    interaction = Interaction(
        kind="approve", team_id=rig.team, user_id=U_ANNA, instance_id=gate, channel="D" + U_ANNA, ts="1.000001"
    )
    rig.work(queue_message(rig.env.services.sealer, rig.tenant_id, interaction))
    (told,) = rig.slack.ephemeral
    assert "No gate with this id waits for you here." in told["text"]
    assert rig.durable.instances[chain_instance_id(gate)].get("events") is None
    assert GateStore(rig.env.storage, other, rig.env.services.sealer).votes(gate) == []
