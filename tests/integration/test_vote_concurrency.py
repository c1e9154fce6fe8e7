"""One person, one vote, under concurrency: identical approvals sent at once through the registered HTTP
function (`approval_decision`), with the real DurableOrchestrationClient against the local Durable HTTP API
(slowed down, to widen the race), gate state and audit log in Azurite, tokens from a local Entra issuer."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import UpdateMode

from devstack.durable_api import DurableApiServer
from devstack.entra_issuer import LocalEntraIssuer
from gatekeeper.approvals.chain import ChainPlan, Decision
from gatekeeper.contracts.gate import GateStatus, chain_instance_id
from gatekeeper.gates.store import VOTE_CLAIM_LEASE, GateIndex, GateRecord, GateStore
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import set_services
from gatekeeper.store.tables import TablePurpose
from tests.support.gatekeeper_env import ENTRA_TENANT, http_function, make_env
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

AUDIENCE = "api://gatekeeper-vote-concurrency"
ANNA, PIET = "0000000a-0000-4000-8000-00000000000a", "0000000b-0000-4000-8000-00000000000b"
VOTERS = 20


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalEntraIssuer]:
    with LocalEntraIssuer() as server:
        yield server


@pytest.fixture(scope="module")
def runtime_env(azurite, tmp_path_factory, issuer) -> Any:
    env = make_env(azurite.connection_string, tmp_path_factory.mktemp("keys"))
    env.services.token_validator = EntraTokenValidator(
        AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: True
    )
    return env


@pytest.fixture
def durable() -> Iterator[DurableApiServer]:
    with DurableApiServer() as server:
        yield server


@pytest.fixture
def gate(runtime_env, durable) -> Iterator[dict[str, Any]]:
    """A gate waiting at stage 0 (two approvers, quorum 2), with its chain orchestration running."""
    set_services(runtime_env.services)
    http_function("approval_decision")  # index the app once, before any thread looks a function up
    now = datetime.now(UTC)
    gate_id = "gate-" + uuid.uuid4().hex
    GateIndex(runtime_env.storage).put(gate_id, runtime_env.tenant_id)
    store = GateStore(runtime_env.storage, runtime_env.tenant_id, runtime_env.services.sealer)
    plan = ChainPlan.model_validate(
        {"stages": [{"name": "cab", "approvers": [ANNA, PIET], "quorum": 2, "timeout": "PT1H"}]}
    )
    store.save(
        GateRecord(
            instance_id=gate_id,
            tenant_id=runtime_env.tenant_id,
            status=GateStatus.AWAITING_APPROVAL,
            level="L2",
            title="deploy contoso/webshop to production",
            requester=("dev@contoso.com",),
            created_at=now - timedelta(minutes=30),
            updated_at=now,
            chain_instance_id=chain_instance_id(gate_id),
            plan=plan,
            stage=0,
            stage_started_at=now - timedelta(minutes=30),
            deadline=now + timedelta(minutes=30),
        )
    )
    durable.instances[chain_instance_id(gate_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    try:
        yield {"id": gate_id, "store": store, "env": runtime_env}
    finally:
        set_services(None)


def post(gate_id: str, durable: DurableApiServer, token: str, decision: str = "approve") -> func.HttpResponse:
    request = func.HttpRequest(
        "POST",
        f"http://localhost/api/approvals/{gate_id}/decisions",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        body=json.dumps({"decision": decision, "comment": "ship it"}).encode(),
        route_params={"instance_id": gate_id},
    )
    return run_on_worker(http_function("approval_decision")(req=request, client=durable.client_binding))


def all_at_once(gate_id: str, durable: DurableApiServer, token: str, n: int = VOTERS) -> list[func.HttpResponse]:
    """`n` identical requests released together by a barrier; every one answered within the timeout."""
    barrier = threading.Barrier(n, timeout=30)

    def one(_: int) -> func.HttpResponse:
        barrier.wait()
        return post(gate_id, durable, token)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n), timeout=180))


def statuses(responses: list[func.HttpResponse]) -> list[int]:
    return sorted(r.status_code for r in responses)


def slugs(responses: list[func.HttpResponse], status: int) -> set[str]:
    return {json.loads(r.get_body())["type"].rsplit("/", 1)[-1] for r in responses if r.status_code == status}


def delivered(durable: DurableApiServer) -> list[Any]:
    """The vote events the chain orchestration received (accepted raiseEvent calls)."""
    return [r for r in durable.requests_to("/raiseEvent/", "POST") if r.status == 202]


def decided_entries(env: Any) -> list[Any]:
    return [r for r in env.services.audit_for(env.tenant_id).records() if r.kind == "approval_decided"]


def test_twenty_identical_approvals_at_once_count_once(gate, durable, issuer):
    env = gate["env"]
    before = len(decided_entries(env))
    durable.delay("/raiseEvent/", 0.3)
    responses = all_at_once(gate["id"], durable, issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE))
    assert statuses(responses) == [202] + [409] * (VOTERS - 1)
    assert slugs(responses, 409) == {"duplicate-vote"}
    [event] = delivered(durable)
    assert event.path.endswith("/raiseEvent/approval-vote-0")
    assert len(decided_entries(env)) == before + 1
    [vote] = gate["store"].votes(gate["id"])
    assert vote.voter_id == ANNA and vote.raised


def test_after_a_failed_delivery_twenty_identical_retries_deliver_once(gate, durable, issuer):
    """The first request stored the vote but the orchestration could not be reached (503): the claim is
    handed back, so a retry delivers it at once, and exactly one of twenty concurrent retries does."""
    env = gate["env"]
    token = issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE)
    before = len(decided_entries(env))
    durable.fail_next(1, 500, path_contains="/raiseEvent/", body={"Message": "storage unavailable"})
    first = post(gate["id"], durable, token)
    assert first.status_code == 503, first.get_body()
    assert delivered(durable) == [] and len(decided_entries(env)) == before
    durable.delay("/raiseEvent/", 0.3)
    responses = all_at_once(gate["id"], durable, token)
    assert statuses(responses) == [202] + [409] * (VOTERS - 1)
    assert len(delivered(durable)) == 1
    assert len(decided_entries(env)) == before + 1


def test_a_vote_whose_request_died_is_delivered_once_after_the_claim_expires(gate, durable, issuer):
    """A request that stored the vote and died before raising it: while its claim runs nobody else
    delivers it (409); after the lease, exactly one of twenty identical retries does."""
    env = gate["env"]
    token = issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE)
    before = len(decided_entries(env))
    stored_at = datetime.now(UTC) - VOTE_CLAIM_LEASE + timedelta(seconds=20)
    gate["store"].record_vote(gate["id"], ANNA, Decision.APPROVE, 0, stored_at, "ship it")
    early = post(gate["id"], durable, token)  # the dead request's claim still runs (20 s more)
    assert early.status_code == 409 and delivered(durable) == []
    # time passes: the claim ends (written as the lease running out, not by waiting two minutes)
    expired = {"PartitionKey": gate["id"], "RowKey": "voter|" + ANNA, "claim_until": stored_at - timedelta(seconds=1)}
    env.storage.tenant_table(env.tenant_id, TablePurpose.GATES).upsert_entity(expired, mode=UpdateMode.MERGE)
    responses = all_at_once(gate["id"], durable, token)
    assert statuses(responses) == [202] + [409] * (VOTERS - 1)
    assert len(delivered(durable)) == 1
    assert len(decided_entries(env)) == before + 1


def test_two_different_people_voting_at_once_both_count(gate, durable, issuer):
    tokens = [issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE), issuer.issue(PIET, ENTRA_TENANT, AUDIENCE)]
    barrier = threading.Barrier(2, timeout=30)

    def one(token: str) -> func.HttpResponse:
        barrier.wait()
        return post(gate["id"], durable, token)

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(one, tokens, timeout=120))
    assert statuses(responses) == [202, 202]
    assert sorted(e.path.rsplit("/", 1)[1] for e in delivered(durable)) == ["approval-vote-0", "approval-vote-1"]
