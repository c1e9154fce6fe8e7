"""The decision service and the chain's models (issue 21: survivors of `make mutation MODULES=approvals`).

A vote is only counted on a gate that really waits for approval at a stage of its plan; a vote stored by a
request that died before delivering it is delivered by the person's retry, exactly once; what an approver is
told about an unresolved requester names the stage people count from 1; the chain's values are immutable.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest
from pydantic import ValidationError

from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from functions.durable_gateway import DurableClientGateway
from functions.http import status_of
from gatekeeper.approvals.authenticate import approver_from_headers
from gatekeeper.approvals.chain import ChainApproved, ChainPlan, Decision, StagePlan, Vote
from gatekeeper.audit.log import AuditLog
from gatekeeper.contracts.gate import GateStatus, chain_instance_id
from gatekeeper.errors import GatekeeperError
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.gates.decisions import DecisionRequest, DecisionService
from gatekeeper.gates.store import GateIndex, GateRecord, GateStore
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.security.groups import GroupLookupUnavailable
from gatekeeper.security.principal import Principal
from gatekeeper.security.requester import Requester
from gatekeeper.tenancy.model import TenantRecord
from tests.support.gatekeeper_env import ENTRA_TENANT
from tests.support.worker_loop import worker_loop
from tests.unit.test_gate_decisions import ANNA, PIET, durable, issuer, runtime_env  # noqa: F401

pytestmark = pytest.mark.azurite

PLAN = ChainPlan.model_validate(
    {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 2, "timeout": "PT1H"}]}
)


def _gate(env: Any, durable: Any, **fields: Any) -> str:
    now = datetime.now(UTC)
    gate_id = "gate-" + uuid.uuid4().hex
    GateIndex(env.storage).put(gate_id, env.tenant_id)
    record: dict[str, Any] = {
        "instance_id": gate_id,
        "tenant_id": env.tenant_id,
        "status": GateStatus.AWAITING_APPROVAL,
        "level": "L2",
        "title": "deploy contoso/webshop to production",
        "requester": ("dev@contoso.com",),
        "created_at": now,
        "updated_at": now,
        "chain_instance_id": chain_instance_id(gate_id),
        "plan": PLAN,
        "stage": 0,
        "stage_started_at": now,
        "deadline": now + timedelta(hours=1),
    }
    record.update(fields)
    GateStore(env.storage, env.tenant_id, env.services.sealer).save(GateRecord(**record))
    durable.instances[chain_instance_id(gate_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    return gate_id


def _service(env: Any, durable: Any, **kw: Any) -> DecisionService:
    gateway = DurableClientGateway(df.DurableOrchestrationClient(durable.client_binding), worker_loop())
    return DecisionService(
        env.storage, env.services.sealer, gateway, entra_tenants_for=lambda _t: (ENTRA_TENANT,), **kw
    )


def _person(oid: str, upn: str | None = None) -> Principal:
    return Principal(oid=oid, tid=ENTRA_TENANT, auth="bearer", upn=upn)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": GateStatus.EVALUATED},  # the gate never asked for approval, though a plan is stored
        {"plan": None},  # awaiting, but no plan to count against
        {"stage": None},  # awaiting, but at no stage
        {"stage_started_at": None},  # awaiting, at a stage that never started
    ],
    ids=["evaluated-with-plan", "no-plan", "no-stage", "stage-not-started"],
)
def test_a_gate_not_waiting_at_a_stage_of_its_plan_takes_no_vote(runtime_env, durable, fields):
    gate_id = _gate(runtime_env, durable, **fields)
    with pytest.raises(GatekeeperError) as info:
        _service(runtime_env, durable).decide(gate_id, _person(ANNA), b'{"decision": "approve"}')
    assert (status_of(info.value), info.value.code) == (409, "not-awaiting-approval")
    assert durable.posts("/raiseEvent/") == []


@pytest.mark.parametrize("fields", [{"status": GateStatus.EVALUATED}, {"stage": None}], ids=["evaluated", "no-stage"])
def test_a_gate_not_waiting_offers_no_decision(runtime_env, durable, fields):
    gate_id = _gate(runtime_env, durable, **fields)
    status, view = _service(runtime_env, durable).state(gate_id, _person(ANNA))
    assert (status, view["can_decide"]) == (200, False)


class _DiedAfterStoring(GateStore):
    """An identical request stored this person's vote between our read of the votes and our write, then died
    (`handed_back`: it gave its delivery claim back) or is still delivering it (it holds the claim)."""

    def __init__(self, *args: Any, handed_back: bool) -> None:
        super().__init__(*args)
        self.handed_back = handed_back
        self.raced = False

    def record_vote(self, instance_id, voter_id, decision, stage, at, comment):  # type: ignore[no-untyped-def]
        if not self.raced:
            self.raced = True
            super().record_vote(instance_id, voter_id, decision, stage, at, comment)
            if self.handed_back:
                self.release_delivery(instance_id, voter_id)
        return super().record_vote(instance_id, voter_id, decision, stage, at, comment)


def _racing_service(env: Any, durable: Any, *, handed_back: bool) -> tuple[DecisionService, _DiedAfterStoring]:
    service = _service(env, durable)
    store = _DiedAfterStoring(env.storage, env.tenant_id, env.services.sealer, handed_back=handed_back)
    service._stores[env.tenant_id] = store  # the service's per-tenant store, with the race built in
    return service, store


def test_a_vote_stored_by_a_request_that_died_is_delivered_once_by_the_retry(runtime_env, durable):
    gate_id = _gate(runtime_env, durable)
    service, store = _racing_service(runtime_env, durable, handed_back=True)
    status, body = service.decide(gate_id, _person(ANNA), b'{"decision": "approve"}')
    assert store.raced and (status, body["vote"], body["decision"]) == (202, 0, "approve")
    assert len(durable.posts("/raiseEvent/")) == 1
    [vote] = store.votes(gate_id)
    assert vote.raised


def test_a_vote_another_request_is_still_delivering_is_a_409_not_a_second_event(runtime_env, durable):
    gate_id = _gate(runtime_env, durable)
    service, store = _racing_service(runtime_env, durable, handed_back=False)
    with pytest.raises(GatekeeperError) as info:
        service.decide(gate_id, _person(ANNA), b'{"decision": "approve"}')
    assert store.raced and status_of(info.value) == 409
    assert durable.posts("/raiseEvent/") == []


def test_the_unresolved_requester_note_counts_stages_from_one(runtime_env, durable):
    requester = Requester(resolved=False, seen_as=("github:login:dev-gh",), note="no Entra identity is linked")
    gate_id = _gate(runtime_env, durable, requested_by=requester, extra_approver_stage=0)
    status, view = _service(runtime_env, durable).state(gate_id, _person(ANNA))
    assert status == 200
    record = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer).load(gate_id)
    assert record is not None and record.deadline is not None
    assert view["stage"]["deadline"] == record.deadline.isoformat()
    assert view["requester"]["resolved"] is False
    assert view["requester"]["note"] == (
        "requester unresolved: no Entra identity is linked; one extra distinct approver is required at stage 1"
    )


def test_a_decision_request_and_a_vote_are_immutable():
    request = DecisionRequest(decision=Decision.APPROVE)
    with pytest.raises(ValidationError):
        request.comment = "changed after validation"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ChainApproved(stage=0).stage = 1  # type: ignore[misc]


def test_a_voter_id_may_be_128_characters_and_no_more():
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert Vote(voter_id="v" * 128, decision=Decision.APPROVE, at=at, stage=0).voter_id == "v" * 128
    with pytest.raises(ValidationError):
        Vote(voter_id="v" * 129, decision=Decision.APPROVE, at=at, stage=0)


def test_a_policy_stage_keeps_only_what_the_chain_knows():
    """The policy's approval block may carry more per stage (a description, notification targets): the chain
    plan takes its own keys and ignores the rest instead of refusing the gate."""
    stage = {"name": "cab", "approvers": [ANNA], "quorum": 1, "timeout": "PT1H", "description": "change board"}
    plan = ChainPlan.from_policy({"stages": [stage]})
    assert plan.stages[0].name == "cab" and plan.stages[0].approvers == (ANNA,)


def test_an_approver_id_may_be_256_characters_and_no_more():
    upn = "a" * 244 + "@contoso.com"
    assert len(upn) == 256
    assert StagePlan(name="cab", approvers=(upn,), quorum=1, timeout="PT1H").approvers == (upn,)
    with pytest.raises(ValidationError):
        StagePlan(name="cab", approvers=("a" + upn,), quorum=1, timeout="PT1H")


def test_a_comment_of_the_longest_allowed_length_is_audited_whole(runtime_env, durable):
    env = runtime_env
    audit = AuditLog(env.storage, env.services.sealer, None, env.tenant_id, checkpoint_every=10_000)
    gate_id = _gate(env, durable, title="t" * 1500)
    comment = "c" * 1000  # DecisionRequest's limit
    body = ('{"decision": "approve", "comment": "' + comment + '"}').encode()
    assert _service(env, durable, audit_for=lambda _t: audit).decide(gate_id, _person(ANNA), body)[0] == 202
    [entry] = [e for e in audit.entries() if e.get("instance_id") == gate_id]
    assert audit.open_data(entry)["comment"] == comment
    assert audit.readable(entry)["subject"] == "t" * 1000  # the gate's title, cut to the audit's limit


def _refusal(env: Any, durable: Any, body: bytes) -> GatekeeperError:
    with pytest.raises(GatekeeperError) as info:
        _service(env, durable).decide(_gate(env, durable), _person(ANNA), body)
    return info.value


def test_a_decision_body_is_at_most_16_kib(runtime_env, durable):
    padded = b'{"decision": "approve", "comment": ""}'
    at_limit = padded + b" " * (16 * 1024 - len(padded))
    assert _service(runtime_env, durable).decide(_gate(runtime_env, durable), _person(ANNA), at_limit)[0] == 202
    too_large = _refusal(runtime_env, durable, at_limit + b" ")
    assert (status_of(too_large), too_large.code) == (413, "body-too-large")
    assert "16384 bytes" in too_large.detail


def test_a_bad_decision_names_the_field_and_the_two_choices(runtime_env, durable):
    bad = _refusal(runtime_env, durable, b'{"decision": "maybe"}')
    assert (status_of(bad), bad.field, bad.detail) == (422, "decision", "decision: must be 'approve' or 'reject'")
    long = _refusal(runtime_env, durable, ('{"decision": "approve", "comment": "' + "c" * 1001 + '"}').encode())
    assert long.field == "comment" and "1000" in long.detail and "approve" not in long.detail


# ----- the directory: a requester known by address only ----------------------------------------------------

GRAPH_TOKEN = "graph-token-for-decision-gap-tests-0001"
DEV = "0d0d0d0d-0000-4000-8000-00000000de00"
DEV_UPN, ANNA_UPN = "dev@contoso.onmicrosoft.com", "anna@contoso.onmicrosoft.com"
USERS = {
    DEV: {"userPrincipalName": DEV_UPN, "mail": "dev@contoso.com", "proxyAddresses": ["smtp:dev.alias@contoso.com"]},
    ANNA: {"userPrincipalName": ANNA_UPN, "mail": "anna@contoso.com", "proxyAddresses": []},
}
BOTH = ChainPlan.model_validate({"stages": [{"name": "cab", "approvers": [DEV, ANNA], "quorum": 1, "timeout": "PT1H"}]})


@pytest.fixture
def graph() -> Any:
    with LocalGraphServer(GRAPH_TOKEN, users=USERS) as server:
        yield server


@pytest.fixture
def directory(graph: LocalGraphServer) -> Any:
    client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
    with GraphUserDirectory(client, http_client=http) as found:
        yield found


def test_a_requester_known_by_address_only_cannot_approve_under_their_object_id(runtime_env, durable, directory):
    """A gate recorded before requesters were resolved (no `requested_by`) names the requester by address:
    the voter's directory addresses decide whether they are that person."""
    gate_id = _gate(runtime_env, durable, plan=BOTH)  # requester ("dev@contoso.com",), requested_by None
    service = _service(runtime_env, durable, directory=directory)
    assert service.state(gate_id, _person(DEV, DEV_UPN))[1]["can_decide"] is False
    with pytest.raises(GatekeeperError) as info:
        service.decide(gate_id, _person(DEV, DEV_UPN), b'{"decision": "approve"}')
    assert (status_of(info.value), info.value.code) == (403, "self-approval")
    assert durable.posts("/raiseEvent/") == []
    # another approver may, and the chain hears every address the directory knows them by
    assert service.state(gate_id, _person(ANNA, ANNA_UPN))[1]["can_decide"] is True
    assert service.decide(gate_id, _person(ANNA, ANNA_UPN), b'{"decision": "approve"}')[0] == 202
    [(_path, raw)] = durable.posts("/raiseEvent/")
    event = json.loads(raw)
    event = json.loads(event) if isinstance(event, str) else event
    assert {"anna@contoso.com", ANNA_UPN} <= set(event["aliases"])


def test_a_directory_that_cannot_answer_counts_no_vote_on_a_name_only_requester(runtime_env, durable, directory, graph):
    gate_id = _gate(runtime_env, durable, plan=BOTH)
    service = _service(runtime_env, durable, directory=directory)
    graph.fail_next(50, 500, path_contains="/users/")
    status, view = service.state(gate_id, _person(ANNA, ANNA_UPN))
    assert (status, view["can_decide"]) == (200, False)  # the page shows; no decision is offered
    with pytest.raises(GatekeeperError) as info:
        service.decide(gate_id, _person(ANNA, ANNA_UPN), b'{"decision": "approve"}')
    assert (status_of(info.value), info.value.code) == (503, "identity-lookup-unavailable")
    assert durable.posts("/raiseEvent/") == []


def test_a_resolved_requester_needs_no_directory_to_admit_another_approver(runtime_env, durable, directory, graph):
    requester = Requester(oid=DEV, resolved=True, seen_as=("github:login:dev-gh",))
    assert requester.needs_names()  # the login is a name: the directory would be asked if it could answer
    gate_id = _gate(runtime_env, durable, plan=BOTH, requester=(DEV, "github:login:dev-gh"), requested_by=requester)
    service = _service(runtime_env, durable, directory=directory)
    graph.fail_next(50, 500, path_contains="/users/")
    assert service.decide(gate_id, _person(ANNA, ANNA_UPN), b'{"decision": "approve"}')[0] == 202


def test_a_vote_at_a_later_stage_is_stored_for_that_stage(runtime_env, durable):
    two = ChainPlan.model_validate(
        {
            "stages": [
                {"name": "lead", "approvers": [PIET], "quorum": 1, "timeout": "PT1H"},
                {"name": "cab", "approvers": [ANNA, PIET], "quorum": 1, "timeout": "PT1H"},
            ]
        }
    )
    gate_id = _gate(runtime_env, durable, plan=two, stage=1)
    status, body = _service(runtime_env, durable).decide(gate_id, _person(ANNA), b'{"decision": "approve"}')
    assert (status, body["stage"]) == (202, 1)
    [vote] = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer).votes(gate_id)
    assert vote.stage == 1


def test_a_decided_gate_says_when_it_was_decided(runtime_env, durable):
    decided_at = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    gate_id = _gate(runtime_env, durable, status=GateStatus.APPROVED, decided_at=decided_at)
    with pytest.raises(GatekeeperError) as info:
        _service(runtime_env, durable).decide(gate_id, _person(ANNA), b'{"decision": "approve"}')
    assert (status_of(info.value), info.value.code) == (410, "gate-decided")
    assert decided_at.isoformat() in info.value.detail


def test_a_stranger_is_refused_the_view_without_blaming_the_directory(runtime_env, durable):
    gate_id = _gate(runtime_env, durable)
    with pytest.raises(GatekeeperError) as info:
        _service(runtime_env, durable).state(gate_id, _person("0c0c0c0c-0000-4000-8000-00000000c000"))
    assert (status_of(info.value), info.value.code) == (403, "not-an-approver")
    assert info.value.detail == "Only the approvers named in this gate's approval chain may see it."


def test_a_missing_decision_says_it_is_missing(runtime_env, durable):
    missing = _refusal(runtime_env, durable, b"{}")
    assert (missing.field, missing.detail) == ("decision", "decision: Field required")


def test_an_approver_the_directory_does_not_know_may_still_vote(runtime_env, durable, directory):
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [PIET, ANNA], "quorum": 1, "timeout": "PT1H"}]}
    )
    gate_id = _gate(runtime_env, durable, plan=plan)  # a name-only requester: the directory is asked
    service = _service(runtime_env, durable, directory=directory)
    assert service.decide(gate_id, _person(PIET, "piet@contoso.com"), b'{"decision": "approve"}')[0] == 202


def test_a_token_with_too_many_groups_and_no_directory_is_refused_not_crashed(runtime_env, durable):
    group = "0c8d7e6f-1a2b-4c3d-8e9f-aabbccddeeff"
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [f"group:{group}"], "quorum": 1, "timeout": "PT1H"}]}
    )
    gate_id = _gate(runtime_env, durable, plan=plan)
    overage = Principal(oid=ANNA, tid=ENTRA_TENANT, auth="bearer", groups_overage=True)
    with pytest.raises(GatekeeperError) as info:
        _service(runtime_env, durable).decide(gate_id, overage, b'{"decision": "approve"}')
    assert (status_of(info.value), info.value.code) == (403, "not-an-approver")


def test_of_several_validation_errors_the_first_is_named(runtime_env, durable):
    both = _refusal(runtime_env, durable, ('{"decision": "maybe", "comment": "' + "c" * 1001 + '"}').encode())
    assert both.field == "decision" and len(both.extra["errors"]) == 1


PSA_PLAN = ChainPlan.model_validate({"stages": [{"name": "cab", "kind": "psa_change_approval", "timeout": "P2D"}]})


@pytest.mark.parametrize(("row", "applied"), [("opened", True), ("named", False), ("none", False)])
def test_a_psa_decision_reaches_a_gate_that_named_no_ticket_only_through_the_ticket_gatekeeper_opened(
    runtime_env, durable, row, applied
):
    """A gate that named no ticket is linked to the change ticket Gatekeeper opened for it; a ticket row that
    Gatekeeper did not open, or none at all, links nothing (and never crashes the connector event)."""
    gate_id = _gate(runtime_env, durable, plan=PSA_PLAN)
    ticket = str(uuid.uuid4().int % 10**9)  # the tenant's tables are shared by the cases: one ticket each
    store = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer)
    store.link_ticket(ticket, gate_id)
    if row != "none":
        store.save_psa_ticket(gate_id, "connectwise", ticket, opened=row == "opened")
    event = PipelineEvent(
        tenant_id=runtime_env.tenant_id, source=EventSource.CONNECTWISE, kind=EventKind.CHANGE_APPROVED, subject=ticket
    )
    tenant = TenantRecord(tenant_id="contoso", display_name="Contoso", psa_decisions_without_company=True)
    raised = len(durable.posts("/raiseEvent/"))
    audit = AuditLog(runtime_env.storage, runtime_env.services.sealer, None, runtime_env.tenant_id)
    service = _service(runtime_env, durable, tenant_for=lambda _t: tenant, audit_for=lambda _t: audit)
    outcomes = service.psa_change(event)
    if applied:
        assert [(o["instance_id"], o["status"]) for o in outcomes] == [(gate_id, "accepted")]
        assert len(durable.posts("/raiseEvent/")) == raised + 1
        [entry] = [e for e in audit.entries() if e.get("instance_id") == gate_id]
        data = audit.open_data(entry)  # the decision is audited as the PSA's, naming its source and ticket
        assert (data["psa"], data["source"], data["ticket"], data["decision"]) == (
            True,
            "connectwise",
            ticket,
            "approve",
        )
    else:
        assert outcomes == [] and len(durable.posts("/raiseEvent/")) == raised


def test_can_decide_is_keyword_only():
    """The card's decide buttons are never switched on by a bare positional `True`."""
    service = DecisionService(None, None, None, entra_tenants_for=lambda _t: ())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        service.system_view("not a gate id", True)  # type: ignore[misc]


def test_trusting_the_platform_principal_header_is_never_switched_on_by_a_bare_positional_true():
    """`trust_easyauth` is keyword-only: a call site cannot trust client-sent X-MS-CLIENT-PRINCIPAL headers by
    passing a positional True, and with it False a caller without a bearer token is 401."""
    with pytest.raises(TypeError):
        approver_from_headers({}, None, True)  # type: ignore[misc]
    with pytest.raises(GatekeeperError) as info:
        approver_from_headers({"X-MS-CLIENT-PRINCIPAL": "e30="}, None, trust_easyauth=False)
    assert status_of(info.value) == 401


class _OutrunBy(GateStore):
    """Another approver's vote is stored just before this one (both requests checked an open stage): the
    quorum-1 race that `DecisionService._outrun` settles in vote-number order."""

    def __init__(self, *args: Any, first: str, at: datetime) -> None:
        super().__init__(*args)
        self.first, self.at = first, at

    def record_vote(self, instance_id, voter_id, decision, stage, at, comment):  # type: ignore[no-untyped-def]
        if voter_id != self.first and not any(v.voter_id == self.first for v in self.votes(instance_id)):
            super().record_vote(instance_id, self.first, Decision.APPROVE, stage, self.at, "")
        return super().record_vote(instance_id, voter_id, decision, stage, at, comment)


def test_the_vote_that_lost_the_race_is_told_when_the_gate_was_decided(runtime_env, durable):
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 1, "timeout": "PT1H"}]}
    )
    gate_id = _gate(runtime_env, durable, plan=plan)
    first_at = datetime(2030, 6, 3, 10, 1, 2, tzinfo=UTC)
    service = _service(runtime_env, durable)
    store = _OutrunBy(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer, first=ANNA, at=first_at)
    service._stores[runtime_env.tenant_id] = store
    with pytest.raises(GatekeeperError) as info:
        service.decide(gate_id, _person(PIET), b'{"decision": "reject"}')
    assert (status_of(info.value), info.value.code) == (410, "gate-decided")
    assert info.value.detail == f"the gate was approved at {first_at.isoformat()}"
    assert durable.posts("/raiseEvent/") == []


def test_a_psa_decision_stored_but_not_delivered_is_delivered_when_the_event_comes_again(runtime_env, durable):
    """The connector event is redelivered after its first handling stored the PSA vote and died before raising
    it: the redelivery finishes the job (one event raised), never a crash or a second vote."""
    gate_id = _gate(runtime_env, durable, plan=PSA_PLAN)
    ticket = str(uuid.uuid4().int % 10**9)
    store = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer)
    store.link_ticket(ticket, gate_id)
    store.save_psa_ticket(gate_id, "connectwise", ticket, opened=True)
    voter = f"psa:connectwise:{ticket}"
    store.record_vote(gate_id, voter, Decision.APPROVE, 0, datetime.now(UTC), "CAB approved")
    store.release_delivery(gate_id, voter)  # the request that stored it died and handed its claim back
    event = PipelineEvent(
        tenant_id=runtime_env.tenant_id, source=EventSource.CONNECTWISE, kind=EventKind.CHANGE_APPROVED, subject=ticket
    )
    tenant = TenantRecord(tenant_id="contoso", display_name="Contoso", psa_decisions_without_company=True)
    raised = len(durable.posts("/raiseEvent/"))
    outcomes = _service(runtime_env, durable, tenant_for=lambda _t: tenant).psa_change(event)
    assert [(o["instance_id"], o["status"], o["vote"]) for o in outcomes] == [(gate_id, "accepted", 0)]
    assert len(durable.posts("/raiseEvent/")) == raised + 1
    [vote] = store.votes(gate_id)
    assert vote.raised and vote.voter_id == voter


def _psa_gate(env: Any, durable: Any, **fields: Any) -> tuple[str, PipelineEvent]:
    """A gate waiting at a PSA change stage on the change ticket Gatekeeper opened, and that ticket's approval."""
    gate_id = _gate(env, durable, **{"plan": PSA_PLAN, **fields})
    ticket = str(uuid.uuid4().int % 10**9)
    store = GateStore(env.storage, env.tenant_id, env.services.sealer)
    store.link_ticket(ticket, gate_id)
    store.save_psa_ticket(gate_id, "connectwise", ticket, opened=True)
    event = PipelineEvent(
        tenant_id=env.tenant_id, source=EventSource.CONNECTWISE, kind=EventKind.CHANGE_APPROVED, subject=ticket
    )
    return gate_id, event


def _psa_service(env: Any, durable: Any, audit: AuditLog) -> DecisionService:
    tenant = TenantRecord(tenant_id="contoso", display_name="Contoso", psa_decisions_without_company=True)
    return _service(env, durable, tenant_for=lambda _t: tenant, audit_for=lambda _t: audit)


@pytest.mark.parametrize(
    ("case", "reason"),
    [("decided", "gate-decided"), ("not-asked", "not-awaiting-approval"), ("orchestration-gone", "gate-decided")],
)
def test_a_psa_decision_for_a_gate_that_no_longer_waits_is_not_applied_and_audited(runtime_env, durable, case, reason):
    """A gate decided meanwhile, one that never asked for approval, or whose approval orchestration is gone: the
    PSA decision is reported and audited as not applied, never raised as an error into the connector queue."""
    fields: dict[str, Any] = {}
    if case == "decided":
        fields = {"status": GateStatus.APPROVED, "decided_at": datetime.now(UTC)}
    elif case == "not-asked":
        fields = {"status": GateStatus.EVALUATED}
    gate_id, event = _psa_gate(runtime_env, durable, **fields)
    if case == "orchestration-gone":
        durable.instances.pop(chain_instance_id(gate_id))  # the host answers 404 for the chain instance
    audit = AuditLog(runtime_env.storage, runtime_env.services.sealer, None, runtime_env.tenant_id)
    outcomes = _psa_service(runtime_env, durable, audit).psa_change(event)
    assert outcomes == [{"instance_id": gate_id, "status": "not_applied", "reason": reason}]
    [entry] = [e for e in audit.entries() if e.get("instance_id") == gate_id]
    data = audit.open_data(entry)
    assert (data["action"], data["reason"], data["ticket"]) == ("change_decision_not_applied", reason, event.subject)


def test_a_psa_decision_stored_meanwhile_by_another_handling_of_the_event_is_a_duplicate(runtime_env, durable):
    """Two deliveries of one connector event at once: the one whose vote write loses hears `duplicate`, and
    raises nothing (the other delivers)."""
    gate_id, event = _psa_gate(runtime_env, durable)
    audit = AuditLog(runtime_env.storage, runtime_env.services.sealer, None, runtime_env.tenant_id)
    service = _psa_service(runtime_env, durable, audit)
    store = _DiedAfterStoring(
        runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer, handed_back=False
    )
    service._stores[runtime_env.tenant_id] = store
    raised = len(durable.posts("/raiseEvent/"))
    assert service.psa_change(event) == [{"instance_id": gate_id, "status": "duplicate"}]
    assert store.raced and len(durable.posts("/raiseEvent/")) == raised
    [vote] = store.votes(gate_id)
    assert vote.voter_id == f"psa:connectwise:{event.subject}" and not vote.raised


@pytest.mark.parametrize("kind", [EventKind.CHANGE_APPROVED, EventKind.CHANGE_REJECTED])
def test_a_psa_decision_counts_at_the_psa_stage_the_gate_waits_at_with_the_ticket_s_decision(
    runtime_env, durable, kind
):
    """A PSA stage after a people stage: the vote is stored and raised at that stage (1), approving or rejecting
    as the ticket was decided."""
    plan = ChainPlan.model_validate(
        {
            "stages": [
                {"name": "leads", "approvers": [ANNA], "quorum": 1, "timeout": "PT1H"},
                {"name": "cab", "kind": "psa_change_approval", "timeout": "P2D"},
            ]
        }
    )
    gate_id, event = _psa_gate(runtime_env, durable, plan=plan, stage=1)
    event = event.model_copy(update={"kind": kind})
    audit = AuditLog(runtime_env.storage, runtime_env.services.sealer, None, runtime_env.tenant_id)
    decision = "approve" if kind is EventKind.CHANGE_APPROVED else "reject"
    [outcome] = _psa_service(runtime_env, durable, audit).psa_change(event)
    assert (outcome["status"], outcome["stage"], outcome["decision"]) == ("accepted", 1, decision)
    [vote] = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer).votes(gate_id)
    assert (vote.stage, vote.decision.value, vote.raised) == (1, decision, True)
    verb = "approved" if kind is EventKind.CHANGE_APPROVED else "rejected"
    assert vote.comment.startswith(f"connectwise change ticket {event.subject} {verb} in the PSA (")


def test_a_psa_decision_naming_another_company_is_refused_for_every_linked_gate(runtime_env, durable):
    """The company check runs once per event (the first linked gate) and its refusal holds for every gate."""
    gate_id, event = _psa_gate(runtime_env, durable)
    event = event.model_copy(update={"company": "FabrikamInc"})
    tenant = _contoso_with_psa_company()
    raised = len(durable.posts("/raiseEvent/"))
    outcomes = _service(runtime_env, durable, tenant_for=lambda _t: tenant).psa_change(event)
    assert outcomes == [{"instance_id": gate_id, "status": "not_applied", "reason": "ticket-of-another-company"}]
    assert len(durable.posts("/raiseEvent/")) == raised
    assert GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer).votes(gate_id) == []


def test_the_system_view_shows_a_gate_and_refuses_an_id_that_is_none(runtime_env, durable):
    gate_id = _gate(runtime_env, durable)
    service = _service(runtime_env, durable)
    view = service.system_view(gate_id)
    assert (view.instance_id, view.can_decide) == (gate_id, False)
    with pytest.raises(GatekeeperError) as info:
        service.system_view(None)  # type: ignore[arg-type]
    assert status_of(info.value) == 404


def test_the_decision_s_audit_entry_is_listed_in_the_gate_s_view(runtime_env, durable):
    env = runtime_env
    audit = AuditLog(env.storage, env.services.sealer, None, env.tenant_id)
    gate_id = _gate(env, durable)
    assert (
        _service(env, durable, audit_for=lambda _t: audit).decide(gate_id, _person(ANNA), b'{"decision": "approve"}')[0]
        == 202
    )
    [entry] = [e for e in audit.entries() if e.get("instance_id") == gate_id]
    refs = GateStore(env.storage, env.tenant_id, env.services.sealer).audit_refs(gate_id)
    assert [(r.seq, r.kind) for r in refs] == [(entry["seq"], "approval_decided")]


def _contoso_with_psa_company() -> TenantRecord:
    psa = {
        "vendor": "connectwise",
        "url": "https://api-na.myconnectwise.net",
        "login_company": "fabrikammsp",
        "company": "ContosoLtd",
        "board": "Change Management",
        "credentials": {
            "public_key": "env:GK_CONTOSO_CW_PUBLIC",
            "private_key": "env:GK_CONTOSO_CW_PRIVATE",
            "client_id": "env:GK_CONTOSO_CW_CLIENT",
        },
    }
    return TenantRecord(tenant_id="contoso", display_name="Contoso", psa=psa)


def test_a_psa_decision_naming_another_company_is_reported_and_audited_for_each_of_several_linked_gates(
    runtime_env, durable
):
    """Two gates linked to one ticket: the refusal decided at the first gate is reported and audited for the
    second too (the loop goes on to every linked gate; nothing is stored or raised for either)."""
    first, event = _psa_gate(runtime_env, durable)
    second = _gate(runtime_env, durable, plan=PSA_PLAN)
    store = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer)
    store.link_ticket(event.subject, second)
    store.save_psa_ticket(second, "connectwise", event.subject, opened=True)
    event = event.model_copy(update={"company": "FabrikamInc"})
    audit = AuditLog(runtime_env.storage, runtime_env.services.sealer, None, runtime_env.tenant_id)
    tenant = _contoso_with_psa_company()
    service = _service(runtime_env, durable, tenant_for=lambda _t: tenant, audit_for=lambda _t: audit)
    raised = len(durable.posts("/raiseEvent/"))
    outcomes = service.psa_change(event)
    assert sorted(o["instance_id"] for o in outcomes) == sorted([first, second])
    assert {(o["status"], o["reason"]) for o in outcomes} == {("not_applied", "ticket-of-another-company")}
    audited = [e for e in audit.entries() if e.get("instance_id") in (first, second)]
    assert sorted(e["instance_id"] for e in audited) == sorted([first, second])
    assert len(durable.posts("/raiseEvent/")) == raised
    assert store.votes(first) == [] and store.votes(second) == []


def test_a_psa_decision_s_company_is_checked_once_per_event_and_holds_for_every_linked_gate(runtime_env, durable):
    """Two gates linked to one ticket: the tenant is looked up and the company compared once, at the first
    gate; a registry that answers differently a moment later (the tenant offboarded meanwhile) cannot give the
    gates of one event different answers, and a ticket linked to many gates costs one lookup."""
    first, event = _psa_gate(runtime_env, durable)
    second = _gate(runtime_env, durable, plan=PSA_PLAN)
    store = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer)
    store.link_ticket(event.subject, second)
    store.save_psa_ticket(second, "connectwise", event.subject, opened=True)
    tenant = TenantRecord(tenant_id="contoso", display_name="Contoso", psa_decisions_without_company=True)
    lookups: list[str] = []

    def tenant_for(tenant_id: str) -> TenantRecord | None:
        lookups.append(tenant_id)
        return tenant if len(lookups) == 1 else None  # unknown from the second lookup on

    raised = len(durable.posts("/raiseEvent/"))
    outcomes = _service(runtime_env, durable, tenant_for=tenant_for).psa_change(event)
    assert lookups == [runtime_env.tenant_id]
    assert sorted((o["instance_id"], o["status"]) for o in outcomes) == sorted(
        [(first, "accepted"), (second, "accepted")]
    )
    assert len(durable.posts("/raiseEvent/")) == raised + 2


def test_a_psa_decision_skips_links_it_does_not_match_and_still_reaches_the_gate_it_does(runtime_env, durable):
    """The ticket's links are read in instance-id order: a link to a gate no longer stored and a gate that pins
    the same number in another PSA come first; neither is touched, and the gate waiting on this ticket still gets
    the decision."""
    gate_id, event = _psa_gate(runtime_env, durable)
    store = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer)
    stale, other_psa = "gate-" + "0" * 32, "gate-" + "0" * 31 + "1"
    store.link_ticket(event.subject, stale)  # the link outlived its gate
    _gate(runtime_env, durable, instance_id=other_psa, ticket=f"autotask:{event.subject}")
    store.link_ticket(event.subject, other_psa)
    assert store.gates_for_ticket(event.subject)[:2] == [stale, other_psa]
    tenant = TenantRecord(tenant_id="contoso", display_name="Contoso", psa_decisions_without_company=True)
    outcomes = _service(runtime_env, durable, tenant_for=lambda _t: tenant).psa_change(event)
    assert [(o["instance_id"], o["status"]) for o in outcomes] == [(gate_id, "accepted")]
    assert store.votes(other_psa) == []


class _DirectoryDown:
    """A group lookup (the GroupMembership port) for the caller's directory that cannot answer now."""

    def __init__(self) -> None:
        self.asked: list[frozenset[str]] = []

    def serves(self, entra_tenant: str) -> bool:
        return True

    def member_groups(self, entra_tenant: str, user_oid: str, group_ids: Any) -> frozenset[str]:
        self.asked.append(frozenset(group_ids))
        raise GroupLookupUnavailable("directory down")


def test_a_person_named_in_the_stage_votes_with_too_many_groups_while_the_directory_is_down(runtime_env, durable):
    """A caller whose token overflowed its groups but who is named in the stage needs no group answer: the
    directory is not asked at all, so its outage cannot lock a named approver out (no 503)."""
    group = "0c8d7e6f-1a2b-4c3d-8e9f-aabbccddeeff"
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, f"group:{group}"], "quorum": 1, "timeout": "PT1H"}]}
    )
    gate_id = _gate(runtime_env, durable, plan=plan)
    directory = _DirectoryDown()
    service = _service(runtime_env, durable, group_membership=directory)
    overage = Principal(oid=ANNA, tid=ENTRA_TENANT, auth="bearer", groups_overage=True)
    assert service.decide(gate_id, overage, b'{"decision": "approve"}')[0] == 202
    assert directory.asked == []


def test_a_psa_decision_not_applied_is_audited_under_the_gate_s_title_cut_to_the_audit_s_limit(runtime_env, durable):
    gate_id, event = _psa_gate(runtime_env, durable, title="t" * 1500, status=GateStatus.EVALUATED)
    audit = AuditLog(runtime_env.storage, runtime_env.services.sealer, None, runtime_env.tenant_id)
    [outcome] = _psa_service(runtime_env, durable, audit).psa_change(event)
    assert (outcome["status"], outcome["reason"]) == ("not_applied", "not-awaiting-approval")
    [entry] = [e for e in audit.entries() if e.get("instance_id") == gate_id]
    assert audit.readable(entry)["subject"] == "t" * 1000
