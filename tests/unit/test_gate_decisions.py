"""The approval routes as the Functions worker runs them: the registered HTTP functions, the real
DurableOrchestrationClient against a local server speaking the Durable HTTP API, gate state in Azurite,
tokens from a local Entra issuer checked by the real validator."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from devstack.entra_issuer import LocalEntraIssuer
from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from functions import approvals
from functions.durable_gateway import DurableClientGateway
from functions.http import status_of
from gatekeeper.approvals.authenticate import approver_from_headers
from gatekeeper.approvals.chain import ChainPlan, Decision
from gatekeeper.contracts.gate import GateStatus, chain_instance_id
from gatekeeper.errors import GatekeeperError
from gatekeeper.gates.decisions import DecisionService
from gatekeeper.gates.store import GateIndex, GateRecord, GateStore
from gatekeeper.integrations.graph_groups import GraphGroupMembership
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.security.groups import CachedGroupMembership
from gatekeeper.security.principal import Principal
from gatekeeper.services import set_services
from tests.support.gatekeeper_env import ENTRA_TENANT, make_env
from tests.support.worker_loop import run_on_worker, worker_loop

pytestmark = pytest.mark.azurite

AUDIENCE = "api://gatekeeper-route-tests"
ANNA, PIET = "0000000a-0000-4000-8000-00000000000a", "0000000b-0000-4000-8000-00000000000b"


def user_functions() -> dict[str, Any]:
    app = df.DFApp()
    app.register_functions(approvals.bp)
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


FUNCTIONS = user_functions()


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalEntraIssuer]:
    with LocalEntraIssuer() as server:
        yield server


@pytest.fixture
def durable() -> Iterator[DurableApiServer]:
    with DurableApiServer() as server:
        yield server


@pytest.fixture(scope="module")
def runtime_env(azurite, tmp_path_factory, issuer) -> Iterator[Any]:
    """One tenant and runtime for the module (tenant keys are slow to make); one gate per test."""
    env = make_env(azurite.connection_string, tmp_path_factory.mktemp("keys"))
    env.services.token_validator = EntraTokenValidator(
        AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: True
    )
    yield env


def save_gate(env: Any, durable: DurableApiServer, plan: ChainPlan) -> dict[str, Any]:
    """A gate waiting at stage 0 of `plan`, with its chain orchestration running."""
    now = datetime.now(UTC)
    gate_id = "gate-" + uuid.uuid4().hex
    GateIndex(env.storage).put(gate_id, env.tenant_id)
    store = GateStore(env.storage, env.tenant_id, env.services.sealer)
    store.save(
        GateRecord(
            instance_id=gate_id,
            tenant_id=env.tenant_id,
            status=GateStatus.AWAITING_APPROVAL,
            level="L2",
            title="deploy contoso/webshop to production",
            requester=("dev@contoso.com",),
            created_at=now,
            updated_at=now,
            chain_instance_id=chain_instance_id(gate_id),
            plan=plan,
            stage=0,
            stage_started_at=now,
            deadline=now + timedelta(hours=1),
        )
    )
    durable.instances[chain_instance_id(gate_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    return {"id": gate_id, "env": env, "store": store}


@pytest.fixture
def gate(runtime_env, durable) -> Iterator[dict[str, Any]]:
    set_services(runtime_env.services)
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 2, "timeout": "PT1H"}]}
    )
    try:
        yield save_gate(runtime_env, durable, plan)
    finally:
        set_services(None)


def bearer(issuer: LocalEntraIssuer, oid: str, tid: str = ENTRA_TENANT, **claims: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.issue(oid, tid, AUDIENCE, **claims)}


def post(gate_id: str, durable: DurableApiServer, headers: dict[str, str], body: Any) -> func.HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = func.HttpRequest(
        "POST",
        f"http://localhost/api/approvals/{gate_id}/decisions",
        headers=headers,
        body=raw,
        route_params={"instance_id": gate_id},
    )
    return run_on_worker(FUNCTIONS["approval_decision"](req=request, client=durable.client_binding))


def get(gate_id: str, headers: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest(
        "GET",
        f"http://localhost/api/approvals/{gate_id}",
        headers=headers,
        body=b"",
        route_params={"instance_id": gate_id},
    )
    return FUNCTIONS["approval_state"](request)


def raised(durable: DurableApiServer) -> list[tuple[str, Any]]:
    return durable.posts("/raiseEvent/")


def test_an_approval_is_stored_and_raised_as_a_numbered_event(gate, durable, issuer):
    response = post(gate["id"], durable, bearer(issuer, ANNA), {"decision": "approve", "comment": "looks good"})
    assert response.status_code == 202, response.get_body()
    assert json.loads(response.get_body()) == {
        "instance_id": gate["id"],
        "status": "accepted",
        "vote": 0,
        "stage": 0,
        "decision": "approve",
    }
    [(path, body)] = raised(durable)
    assert path.startswith(f"/durabletask/instances/{chain_instance_id(gate['id'])}/raiseEvent/approval-vote-0")
    body = json.loads(body)  # the SDK client posts json.dumps(data) as a JSON string
    assert body["voter_id"] == ANNA and body["decision"] == "approve" and "comment" not in body
    [vote] = gate["store"].votes(gate["id"])
    assert vote.raised and vote.comment == "looks good"  # the comment stays in the (sealed) table row


def test_the_get_route_shows_the_gate_to_its_approvers_only(gate, durable, issuer):
    post(gate["id"], durable, bearer(issuer, ANNA), {"decision": "approve"})
    response = get(gate["id"], bearer(issuer, PIET))
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["status"] == "awaiting_approval" and body["can_decide"] is True
    assert [v["voter_id"] for v in body["votes"]] == [ANNA] and body["stage"]["quorum"] == 2
    assert json.loads(get(gate["id"], bearer(issuer, ANNA)).get_body())["can_decide"] is False
    stranger = get(gate["id"], bearer(issuer, str(uuid.uuid4())))
    assert stranger.status_code == 403 and stranger.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("who", "body", "status", "slug"),
    [
        ("nobody", {"decision": "approve"}, 401, "unauthenticated"),
        ("other-tenant", {"decision": "approve"}, 403, "wrong-tenant"),
        ("stranger", {"decision": "approve"}, 403, "not-an-approver"),
        ("requester", {"decision": "approve"}, 403, "self-approval"),
        ("app", {"decision": "approve"}, 403, "not-a-person"),
        ("anna", {"decision": "maybe"}, 422, "validation-failed"),
        ("anna", b"not json", 422, "validation-failed"),
        ("anna", {"decision": "approve", "extra": 1}, 422, "validation-failed"),
    ],
)
def test_refusals_are_problem_details(gate, durable, issuer, who, body, status, slug):
    headers = {
        "nobody": {},
        "other-tenant": bearer(issuer, ANNA, tid="9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"),
        "stranger": bearer(issuer, str(uuid.uuid4())),
        "requester": bearer(issuer, PIET, upn="dev@contoso.com"),
        "app": bearer(issuer, ANNA, app_only=True),
        "anna": bearer(issuer, ANNA),
    }[who]
    response = post(gate["id"], durable, headers, body)
    assert response.status_code == status and response.mimetype == "application/problem+json"
    problem = json.loads(response.get_body())
    assert problem["type"].endswith("/" + slug) and problem["status"] == status
    assert raised(durable) == []


@pytest.mark.parametrize(
    ("body", "slug", "field"),
    [
        (b'{"decision": "approve", "comment": ' + b"[" * 5000 + b"]" * 5000 + b"}", "json-out-of-bounds", "body"),
        (b'{"decision": "approve", "comment": ' + b"9" * 5000 + b"}", "json-out-of-bounds", "comment"),
        (b'{"decision": "approve", "comment": NaN}', "json-out-of-bounds", "comment"),
        (b'{"decision": "reject", "decision": "approve"}', "duplicate-key", "decision"),
    ],
)
def test_hostile_decision_bodies_are_400_naming_the_field_and_raise_nothing(gate, durable, issuer, body, slug, field):
    response = post(gate["id"], durable, bearer(issuer, ANNA), body)
    assert response.status_code == 400, response.get_body()[:300]
    problem = json.loads(response.get_body())
    assert problem["type"].endswith("/" + slug) and problem["field"] == field
    assert raised(durable) == []


def test_a_second_vote_is_a_conflict_and_a_decided_gate_is_gone(gate, durable, issuer):
    assert post(gate["id"], durable, bearer(issuer, ANNA), {"decision": "approve"}).status_code == 202
    again = post(gate["id"], durable, bearer(issuer, ANNA), {"decision": "reject"})
    assert again.status_code == 409 and json.loads(again.get_body())["type"].endswith("/duplicate-vote")
    record = gate["store"].load(gate["id"])
    gate["store"].save(record.model_copy(update={"status": GateStatus.APPROVED, "decided_at": datetime.now(UTC)}))
    late = post(gate["id"], durable, bearer(issuer, PIET), {"decision": "approve"})
    assert late.status_code == 410 and json.loads(late.get_body())["type"].endswith("/gate-decided")


def test_an_orchestration_that_is_gone_answers_410(gate, durable, issuer):
    durable.instances.clear()  # the host answers 404 for the chain instance
    response = post(gate["id"], durable, bearer(issuer, ANNA), {"decision": "approve"})
    assert response.status_code == 410


def test_the_easy_auth_header_identifies_the_caller_when_trusted(gate, durable, monkeypatch):
    services = gate["env"].services
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": ANNA},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": ENTRA_TENANT},
        {"typ": "preferred_username", "val": "anna@contoso.com"},
        {"typ": "http://schemas.microsoft.com/identity/claims/scope", "val": "user_impersonation"},
    ]
    header = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    headers = {"X-MS-CLIENT-PRINCIPAL": header}
    assert post(gate["id"], durable, headers, {"decision": "approve"}).status_code == 401  # not trusted here
    monkeypatch.setenv("GATEKEEPER_TRUST_EASYAUTH_HEADER", "true")  # the environment is read once, not per request
    assert post(gate["id"], durable, headers, {"decision": "approve"}).status_code == 401
    trusted = dataclasses.replace(services.settings, trust_easyauth_header=True)
    monkeypatch.setattr(services, "settings", trusted)  # the value the composition root passes the trigger
    assert post(gate["id"], durable, headers, {"decision": "approve"}).status_code == 202


class FailingOnce:
    """A gateway whose first call fails in transport, as a host restart would."""

    def __init__(self, inner: DurableClientGateway):
        self.inner = inner
        self.failed = False

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("connection reset")
        self.inner.raise_event(instance_id, event_name, data)


def test_a_vote_stored_but_not_delivered_is_delivered_on_retry_not_refused(gate, durable, issuer):
    env = gate["env"]
    gateway = FailingOnce(DurableClientGateway(df.DurableOrchestrationClient(durable.client_binding), worker_loop()))
    service = DecisionService(
        env.storage,
        env.services.sealer,
        gateway,
        entra_tenants_for=lambda _t: (ENTRA_TENANT,),
    )
    anna = approver_from_headers(bearer(issuer, ANNA), env.services.token_validator, trust_easyauth=False)
    body = json.dumps({"decision": "approve"}).encode()
    with pytest.raises(GatekeeperError) as info:
        service.decide(gate["id"], anna, body)
    assert status_of(info.value) == 503
    [stored] = gate["store"].votes(gate["id"])
    assert stored.decision is Decision.APPROVE and not stored.raised
    status, answer = service.decide(gate["id"], anna, body)
    assert status == 202 and answer["vote"] == 0
    assert [p.rsplit("/", 1)[1].split("?")[0] for p, _ in raised(durable)] == ["approval-vote-0"]
    with pytest.raises(GatekeeperError) as info:
        service.decide(gate["id"], anna, body)
    assert status_of(info.value) == 409


def test_the_service_takes_a_principal_from_any_channel_and_still_refuses_applications(gate, durable):
    """A channel that authenticates in its own way (a Teams card action, Slack) hands the decision service the
    person it established, with no HTTP headers: the vote counts under the same rules. An application
    identity is refused by the service itself, whichever trigger let it through."""
    env = gate["env"]
    service = DecisionService(
        env.storage,
        env.services.sealer,
        DurableClientGateway(df.DurableOrchestrationClient(durable.client_binding), worker_loop()),
        entra_tenants_for=lambda _t: (ENTRA_TENANT,),
    )
    body = json.dumps({"decision": "approve"}).encode()
    app = Principal(oid=PIET, tid=ENTRA_TENANT, auth="bearer", app_only=True)
    with pytest.raises(GatekeeperError) as info:
        service.decide(gate["id"], app, body)
    assert (status_of(info.value), info.value.code) == (403, "not-a-person")
    with pytest.raises(GatekeeperError) as info:
        service.state(gate["id"], app)
    assert (status_of(info.value), info.value.code) == (403, "not-a-person")
    assert gate["store"].votes(gate["id"]) == []
    anna = Principal(oid=ANNA, tid=ENTRA_TENANT, auth="bearer")
    status, answer = service.decide(gate["id"], anna, body)
    assert status == 202 and answer["vote"] == 0
    [stored] = gate["store"].votes(gate["id"])
    assert stored.voter_id == ANNA and stored.decision is Decision.APPROVE
    assert service.state(gate["id"], anna)[1]["votes"][0]["voter_id"] == ANNA


def test_concurrent_voters_get_distinct_vote_numbers(gate):
    store: GateStore = gate["store"]
    at = datetime.now(UTC)
    numbers = [store.record_vote(gate["id"], who, Decision.APPROVE, 0, at, "").seq for who in (ANNA, PIET, "c")]
    assert numbers == [0, 1, 2]
    # A writer that read a stale count tries number 1 again: it moves on to the next free number.
    store_stale = GateStore(gate["env"].storage, gate["env"].tenant_id, gate["env"].services.sealer)
    store_stale.votes = lambda _id: []  # type: ignore[method-assign]  # simulate the stale read
    assert store_stale.record_vote(gate["id"], "d", Decision.REJECT, 0, at, "").seq == 3


# ----- approvers whose token lists too many groups (Entra "groups overage") ---------------------------------

OPS = "5e1d2c3b-0000-4000-8000-0000000000c1"  # the chain's approver group
GRAPH_TOKEN = "graph-token-for-overage-tests-0123456789"


@pytest.fixture
def graph() -> Iterator[LocalGraphServer]:
    with LocalGraphServer(GRAPH_TOKEN, users={PIET: {}}, memberships={ANNA: {OPS, str(uuid.uuid4())}}) as server:
        yield server


def directory(graph: LocalGraphServer, entra_tenant: str = ENTRA_TENANT) -> GraphGroupMembership:
    client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
    return GraphGroupMembership(client, entra_tenant, http_client=http)


@pytest.fixture
def group_gate(runtime_env, durable, graph) -> Iterator[dict[str, Any]]:
    """A chain whose only approvers are group OPS; the runtime reads the directory through the local Graph."""
    set_services(runtime_env.services)
    lookup = directory(graph)
    runtime_env.services.group_membership = CachedGroupMembership(lookup)
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "ops", "approvers": [f"group:{OPS}"], "quorum": 1, "timeout": "PT1H"}]}
    )
    try:
        yield save_gate(runtime_env, durable, plan)
    finally:
        lookup.close()
        del runtime_env.services.group_membership  # back to the settings-built value (none in tests)
        set_services(None)


def overage(issuer: LocalEntraIssuer, oid: str, tid: str = ENTRA_TENANT) -> dict[str, str]:
    """A token that names no groups but says there are too many to list (`hasgroups`)."""
    return bearer(issuer, oid, tid, extra_claims={"hasgroups": True})


def test_an_overage_approver_is_checked_in_the_directory_once_and_may_vote(group_gate, durable, issuer, graph):
    seen = get(group_gate["id"], overage(issuer, ANNA))
    assert seen.status_code == 200 and json.loads(seen.get_body())["can_decide"] is True
    response = post(group_gate["id"], durable, overage(issuer, ANNA), {"decision": "approve"})
    assert response.status_code == 202, response.get_body()
    assert [call["group_ids"] for call in graph.member_checks] == [[OPS]]  # only the chain's group; cached
    assert graph.member_checks[0]["user"] == ANNA
    [(path, _)] = raised(durable)
    assert "approval-vote-0" in path


def test_an_overage_caller_outside_the_group_is_refused_as_not_an_approver(group_gate, durable, issuer, graph):
    response = post(group_gate["id"], durable, overage(issuer, PIET), {"decision": "approve"})
    assert response.status_code == 403
    problem = json.loads(response.get_body())
    assert problem["type"].endswith("/not-an-approver") and "cannot read your directory" not in problem["detail"]
    assert [call["user"] for call in graph.member_checks] == [PIET] and raised(durable) == []


def test_a_token_that_lists_its_groups_never_reaches_the_directory(group_gate, durable, issuer, graph):
    response = post(group_gate["id"], durable, bearer(issuer, ANNA, groups=[OPS]), {"decision": "approve"})
    assert response.status_code == 202 and graph.member_checks == []


def test_an_unreachable_directory_is_503_and_stores_no_vote(group_gate, durable, issuer, graph):
    graph.fail_next(1, 500, path_contains="/checkMemberGroups")
    response = post(group_gate["id"], durable, overage(issuer, ANNA), {"decision": "approve"})
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert json.loads(response.get_body())["type"].endswith("/group-lookup-unavailable")
    assert group_gate["store"].votes(group_gate["id"]) == [] and raised(durable) == []
    assert post(group_gate["id"], durable, overage(issuer, ANNA), {"decision": "approve"}).status_code == 202


def test_a_directory_this_service_cannot_read_gives_403_with_the_reason(runtime_env, durable, issuer, graph):
    set_services(runtime_env.services)
    lookup = directory(graph, entra_tenant=str(uuid.uuid4()))  # the managed identity lives elsewhere
    runtime_env.services.group_membership = lookup
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "ops", "approvers": [f"group:{OPS}"], "quorum": 1, "timeout": "PT1H"}]}
    )
    try:
        gate = save_gate(runtime_env, durable, plan)
        response = post(gate["id"], durable, overage(issuer, ANNA), {"decision": "approve"})
        assert response.status_code == 403
        assert "cannot read your directory" in json.loads(response.get_body())["detail"]
        assert graph.member_checks == []
    finally:
        lookup.close()
        del runtime_env.services.group_membership
        set_services(None)


def test_an_overage_vote_asks_the_directory_only_about_the_current_stages_groups(runtime_env, durable, issuer, graph):
    """A vote at stage 1 of 2 asks about stage 1's group only: the next stage's groups are not this vote's
    business (and a later stage's group would otherwise be looked up, and cached, for nothing)."""
    later = "5e1d2c3b-0000-4000-8000-0000000000c2"
    set_services(runtime_env.services)
    runtime_env.services.group_membership = directory(graph)
    plan = ChainPlan.model_validate(
        {
            "stages": [
                {"name": "ops", "approvers": [f"group:{OPS}"], "quorum": 1, "timeout": "PT1H"},
                {"name": "cab", "approvers": [f"group:{later}"], "quorum": 1, "timeout": "PT1H"},
            ]
        }
    )
    try:
        gate = save_gate(runtime_env, durable, plan)
        assert post(gate["id"], durable, overage(issuer, ANNA), {"decision": "approve"}).status_code == 202
        assert [call["group_ids"] for call in graph.member_checks] == [[OPS]]
    finally:
        del runtime_env.services.group_membership
        set_services(None)


def test_an_approver_named_directly_never_waits_for_the_directory(runtime_env, durable, issuer, graph):
    """Named in the stage and in too many groups: a Graph outage must not lock this person out."""
    set_services(runtime_env.services)
    runtime_env.services.group_membership = directory(graph)
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "ops", "approvers": [PIET, f"group:{OPS}"], "quorum": 1, "timeout": "PT1H"}]}
    )
    try:
        gate = save_gate(runtime_env, durable, plan)
        graph.fail_next(5, 500, path_contains="/checkMemberGroups")
        assert get(gate["id"], overage(issuer, PIET)).status_code == 200
        assert post(gate["id"], durable, overage(issuer, PIET), {"decision": "approve"}).status_code == 202
        assert graph.member_checks == []
        # Someone who depends on the group gets 503 on both routes while the directory cannot answer.
        assert get(gate["id"], overage(issuer, ANNA)).status_code == 503
        assert post(gate["id"], durable, overage(issuer, ANNA), {"decision": "approve"}).status_code == 503
    finally:
        runtime_env.services.group_membership.close()
        del runtime_env.services.group_membership
        set_services(None)
