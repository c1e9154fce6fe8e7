"""Action-level approvals end to end (issue 13): requests through the real registered functions
(`action_request`, `action_status`, `action_cancel`, `action_report`), the event through the real queue
(Azurite), the real dispatcher and the real orchestrators in the local runner, the real decision route logic,
Entra and GitHub Actions OIDC tokens from local issuers checked by the real validators."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.github_oidc import LocalGitHubOidcIssuer
from devstack.runner import ManualClock
from functions.http import problem_body, status_of
from gatekeeper.actions.state import STATE_FIELDS
from gatekeeper.contracts.gate import WITHDRAW_EVENT, chain_instance_id
from gatekeeper.errors import GatekeeperError
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.ingest.queue import decode_message
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.services import set_services
from tests.support.gatekeeper_env import API_KEY, ENTRA_TENANT, GatekeeperEnv, http_function, make_env
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

ENTRA_AUDIENCE = "api://gatekeeper-actions-tests"
GITHUB_AUDIENCE = "api://gatekeeper-actions-tests/github-actions"
OWNER_ID = 4200001
ANNA, PIET = "0000000a-0000-4000-8000-00000000000a", "0000000b-0000-4000-8000-00000000000b"
AGENT = "0000000e-0000-4000-8000-0000000000ee"  # a workload identity (service connection, managed identity)
PLAN = "sha256:" + "ab" * 32

POLICY = {
    "version": 1,
    "defaults": {
        "level": "L2",
        "approval": {"stages": [{"name": "ops", "approvers": [ANNA, PIET], "quorum": 1, "timeout": "PT1H"}]},
    },
    "rules": [
        {"name": "dev", "match": {"environments": ["dev"]}, "level": "L0"},
        {"name": "staging", "match": {"environments": ["staging"]}, "level": "L1"},
        {"name": "secrets", "match": {"actions": ["secret_access"]}, "level": "L3"},
    ],
}


@pytest.fixture(scope="module")
def entra() -> Iterator[LocalEntraIssuer]:
    with LocalEntraIssuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
def github() -> Iterator[LocalGitHubOidcIssuer]:
    with LocalGitHubOidcIssuer() as issuer:
        yield issuer


@dataclass
class World:
    env: GatekeeperEnv
    gates: LocalGates
    entra: LocalEntraIssuer
    github: LocalGitHubOidcIssuer
    durable: DurableApiServer

    @property
    def tenant_id(self) -> str:
        return self.env.tenant_id

    # credentials ---------------------------------------------------------------------------------
    def agent(self, oid: str = AGENT) -> dict[str, str]:
        token = self.entra.issue(oid, ENTRA_TENANT, ENTRA_AUDIENCE, app_only=True)
        return {"Authorization": f"Bearer {token}"}

    def person(self, oid: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.entra.issue(oid, ENTRA_TENANT, ENTRA_AUDIENCE)}

    def workflow(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.github.issue(GITHUB_AUDIENCE, **claims)}

    def api_key(self) -> dict[str, str]:
        return {"X-Gatekeeper-Tenant": self.tenant_id, "x-functions-key": API_KEY}

    # the routes ----------------------------------------------------------------------------------
    def post(self, body: dict[str, Any] | bytes, headers: dict[str, str]) -> func.HttpResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = func.HttpRequest(
            "POST",
            "http://localhost/api/actions",
            headers={"Content-Type": "application/json", **headers},
            body=raw,
        )
        return http_function("action_request")(request)

    def get(self, action_id: str, headers: dict[str, str], wait: str | None = None) -> func.HttpResponse:
        request = func.HttpRequest(
            "GET",
            f"http://localhost/api/actions/{action_id}",
            headers=headers,
            params={"wait": wait} if wait is not None else {},
            route_params={"action_id": action_id},
            body=b"",
        )
        return run_on_worker(http_function("action_status")(req=request, client=self.durable.client_binding))

    def cancel(self, action_id: str, headers: dict[str, str]) -> func.HttpResponse:
        request = func.HttpRequest(
            "POST",
            f"http://localhost/api/actions/{action_id}/cancel",
            headers=headers,
            route_params={"action_id": action_id},
            body=b"",
        )
        return run_on_worker(http_function("action_cancel")(req=request, client=self.durable.client_binding))

    def report(self, action_id: str, body: dict[str, Any], headers: dict[str, str]) -> func.HttpResponse:
        request = func.HttpRequest(
            "POST",
            f"http://localhost/api/actions/{action_id}/report",
            headers={"Content-Type": "application/json", **headers},
            route_params={"action_id": action_id},
            body=json.dumps(body).encode(),
        )
        return http_function("action_report")(request)

    # the queue and the runner --------------------------------------------------------------------
    def pump(self) -> list[str]:
        """What the queue trigger does: each queued event to the dispatcher; then the runner runs."""
        started = []
        for text in self.env.drain():
            queued = decode_message(self.env.services.sealer, text, self.env.services.large_events)
            result = self.gates.dispatcher.dispatch(queued.event, queued.event_id)
            if result.instance_id and result.disposition.value == "started":
                started.append(result.instance_id)
        self.gates.runner.run_until_idle()
        return started

    def decide(self, action_id: str, oid: str, decision: str) -> tuple[int, dict[str, Any]]:
        try:
            return self.gates.decide(action_id, self.person(oid), decision)
        except GatekeeperError as problem:
            return status_of(problem), problem_body(problem)

    def audit(self, action_id: str) -> list[Any]:
        return [r for r in self.env.services.audit_for(self.tenant_id).records() if r.instance_id == action_id]


@pytest.fixture
def world(azurite, tmp_path, entra, github) -> Iterator[World]:
    env = make_env(
        azurite.connection_string,
        tmp_path / "keys",
        extra_identities=(f"github:owner-id:{OWNER_ID}",),
        extra_environ={
            "GATEKEEPER_ENTRA_AUDIENCE": ENTRA_AUDIENCE,
            "GATEKEEPER_ENTRA_AUTHORITY_HOST": entra.authority_host,
            "GATEKEEPER_GITHUB_OIDC_AUDIENCE": GITHUB_AUDIENCE,
            "GATEKEEPER_GITHUB_OIDC_ISSUER": github.issuer,
        },
    )
    policy = load_policy(POLICY)
    decider = PolicyDecider(lambda _t: policy)
    env.services.decider = decider  # before the action service is built: it decides with this policy
    outbox = OutboxNotifier(tmp_path / "outbox")
    gates = local_gates(
        env.storage,
        env.services.sealer,
        decider=decider,
        audit_for=env.services.audit_for,
        notifier=outbox,
        callbacks=PipelineCallbacks(
            webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
            webhook_secret=lambda _t: b"unused",
        ),
        entra_tenants_for=env.services.entra_tenants_for,
        token_validator=env.services.token_validator,
        clock=ManualClock(datetime.now(UTC)),
    )
    with DurableApiServer() as durable:
        set_services(env.services)
        http_function("action_request")  # index the app once, before any thread looks a function up
        try:
            yield World(env, gates, entra, github, durable)
        finally:
            set_services(None)


def ask(environment: str = "production", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "command": "terraform apply -auto-approve plan.tfplan",
        "action": "infrastructure_change",
        "target": {"environment": environment, "resource": "rg-contoso-prod"},
        "context": {
            "repository": "contoso/infra",
            "ref": "refs/heads/main",
            "commit": "a" * 40,
            "version_tags": ["v1.4.2"],
            "ticket": "CHG0012345",
            "plan_digest": PLAN,
            "plan_url": "https://ci.contoso.com/plans/42",
        },
        "idempotency_key": "run-42:apply-" + uuid.uuid4().hex[:8],
    }
    body.update(overrides)
    return body


def upn(oid: str) -> str:
    """The UPN the local issuer puts in a person's token (the decision route audits it with the vote)."""
    return f"{oid[:8]}@example.onmicrosoft.com"


def body(response: func.HttpResponse) -> dict[str, Any]:
    return json.loads(response.get_body())


# -- levels ---------------------------------------------------------------------------------------


def test_l0_and_l1_are_approved_at_once_and_l1_people_are_notified_afterwards(world):
    l0 = world.post(ask("dev"), world.agent())
    assert l0.status_code == 200, l0.get_body()
    assert body(l0)["status"] == "approved" and body(l0)["level"] == "L0" and body(l0)["decision"] == "approved"
    l1 = world.post(ask("staging"), world.agent())
    assert l1.status_code == 200 and body(l1)["level"] == "L1" and body(l1)["status"] == "approved"
    assert body(l1)["status_url"].endswith(f"/api/actions/{body(l1)['id']}")
    assert sorted(world.pump()) == sorted([body(l0)["id"], body(l1)["id"]])
    kinds = [r.kind for r in world.audit(body(l1)["id"])]
    assert kinds[0] == "action_requested" and "decision" in kinds and "notification" in kinds


def test_l3_is_human_only_at_once_and_opens_a_human_task(world):
    response = world.post(ask(action="secret_access"), world.agent())
    assert response.status_code == 200
    answer = body(response)
    assert (answer["status"], answer["level"], answer["decision"]) == ("human_only", "L3", "denied")
    assert answer["reason"]
    world.pump()
    assert "human_task_opened" in [r.kind for r in world.audit(answer["id"])]
    state = body(world.get(answer["id"], world.agent()))
    assert state["status"] == "human_only" and state["outcome"] is None


def test_l2_waits_for_a_person_and_the_decision_route_approves_it(world):
    response = world.post(ask(), world.agent())
    assert response.status_code == 202, response.get_body()
    answer = body(response)
    action_id = answer["id"]
    assert answer["status"] == "pending" and answer["level"] == "L2"
    assert response.headers["Location"] == answer["status_url"]
    assert answer["approval_url"].endswith(f"/api/approvals/{action_id}/page")
    world.pump()
    pending = body(world.get(action_id, world.agent()))
    assert tuple(pending) == STATE_FIELDS
    assert pending["status"] == "pending" and pending["decision"] is None
    assert pending["command"] == "terraform apply -auto-approve plan.tfplan"
    # the approver sees the exact command and the plan on the gate's view
    view = world.gates.decisions.system_view(action_id)
    assert view.command == "terraform apply -auto-approve plan.tfplan" and view.plan_digest == PLAN
    assert world.decide(action_id, ANNA, "approve")[0] == 202
    state = body(world.get(action_id, world.agent()))
    assert (state["status"], state["decision"], state["decided_by"]) == ("approved", "approved", upn(ANNA))
    assert world.report(action_id, {"outcome": "executed", "exit_code": 0}, world.agent()).status_code == 202
    assert body(world.get(action_id, world.agent()))["outcome"] == "executed"
    kinds = [r.kind for r in world.audit(action_id)]
    assert kinds[0] == "action_requested" and "approval_decided" in kinds and kinds[-1] == "action_reported"


def test_the_registered_approval_route_decides_an_action_like_any_gate(world):
    """`POST /api/approvals/{id}/decisions` (the route the Teams card, the page and API clients call)."""
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    chain = chain_instance_id(action_id)
    world.durable.instances[chain] = {"name": "approval_chain", "runtimeStatus": "Running"}
    request = func.HttpRequest(
        "POST",
        f"http://localhost/api/approvals/{action_id}/decisions",
        headers={**world.person(PIET), "Content-Type": "application/json"},
        body=json.dumps({"decision": "approve", "comment": "plan reviewed"}).encode(),
        route_params={"instance_id": action_id},
    )
    response = run_on_worker(http_function("approval_decision")(req=request, client=world.durable.client_binding))
    assert response.status_code == 202, response.get_body()
    [raised] = [r for r in world.durable.requests_to("/raiseEvent/", "POST") if r.status == 202]
    assert raised.path.startswith(f"/durabletask/instances/{chain}/raiseEvent/approval-vote-")
    # the Durable host delivers the vote to the chain; the runner stands in for it
    vote = json.loads(raised.json)  # the SDK posts the JSON text of the vote as a JSON string
    assert vote["voter_id"] == PIET and vote["decision"] == "approve"
    world.gates.gateway.raise_event(chain, raised.path.rsplit("/", 1)[-1], vote)
    world.gates.runner.run_until_idle()
    state = body(world.get(action_id, world.agent()))
    assert (state["status"], state["decided_by"]) == ("approved", upn(PIET))


def test_the_requester_cannot_approve_their_own_action(world):
    action_id = body(world.post(ask(), world.agent(ANNA)))["id"]
    world.pump()
    status, problem = world.decide(action_id, ANNA, "approve")
    assert status == 403, problem
    assert body(world.get(action_id, world.agent(ANNA)))["status"] == "pending"


def test_denied_action_is_recorded_and_a_skip_is_audited_but_executed_is_refused(world):
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    assert world.decide(action_id, PIET, "reject")[0] == 202
    state = body(world.get(action_id, world.agent()))
    assert (state["status"], state["decision"], state["decided_by"]) == ("denied", "denied", upn(PIET))
    refused = world.report(action_id, {"outcome": "executed"}, world.agent())
    assert refused.status_code == 409 and body(refused)["type"].endswith("/not-approved")
    assert world.report(action_id, {"outcome": "skipped", "detail": "denied"}, world.agent()).status_code == 202
    reports = [r.data for r in world.audit(action_id) if r.kind == "action_reported"]
    assert [(r["outcome"], r["refused"]) for r in reports] == [("executed", True), ("skipped", False)]
    assert body(world.get(action_id, world.agent()))["outcome"] == "skipped"


# -- long poll ------------------------------------------------------------------------------------


def test_long_poll_answers_as_soon_as_the_action_is_decided(world):
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    timer = threading.Timer(1.0, lambda: world.decide(action_id, ANNA, "approve"))
    timer.start()
    started = time.monotonic()
    state = body(world.get(action_id, world.agent(), wait="20"))
    took = time.monotonic() - started
    timer.join()
    assert state["status"] == "approved"
    assert 0.9 <= took < 6, took  # answered on the decision (next read within 2 s), not at the end of the wait


def test_long_poll_ends_at_the_wait_bound_and_larger_waits_are_refused(world):
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    started = time.monotonic()
    state = body(world.get(action_id, world.agent(), wait="2"))
    assert state["status"] == "pending" and 1.9 <= time.monotonic() - started < 4
    for wait in ("26", "-1", "abc", "1e3", "9" * 40):
        refused = world.get(action_id, world.agent(), wait=wait)
        assert refused.status_code == 422 and body(refused)["field"] == "wait", wait


# -- cancel and timeout -----------------------------------------------------------------------------


def test_the_requester_cancels_a_pending_action_and_the_chain_ends(world):
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    # the Durable HTTP API knows the chain the runner is running
    world.durable.instances[chain_instance_id(action_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    other = world.cancel(action_id, world.agent(PIET))
    assert other.status_code == 403
    answer = world.cancel(action_id, world.agent())
    assert answer.status_code == 200, answer.get_body()
    assert body(answer)["status"] == "cancelled"
    raised = [r for r in world.durable.requests_to("/raiseEvent/", "POST") if r.status == 202]
    assert len(raised) == 1
    assert f"/instances/{chain_instance_id(action_id)}/raiseEvent/{WITHDRAW_EVENT}" in raised[0].path
    # the host delivers the event; in the runner that is:
    world.gates.gateway.raise_event(chain_instance_id(action_id), WITHDRAW_EVENT, {"reason": "cancelled"})
    world.gates.runner.run_until_idle()
    assert world.gates.runner.status(action_id).runtime_status == "Completed"
    assert world.cancel(action_id, world.agent()).status_code == 409
    assert world.decide(action_id, ANNA, "approve")[0] in (409, 410)
    kinds = [r.kind for r in world.audit(action_id)]
    assert "action_cancelled" in kinds and "approval_withdrawn" in kinds
    assert body(world.get(action_id, world.agent()))["status"] == "cancelled"


def test_an_action_past_its_own_timeout_expires(world):
    response = world.post(ask(timeout="PT1M"), world.agent())
    action_id = body(response)["id"]
    world.pump()
    store = world.env.services.actions._actions(world.tenant_id)  # age the request: its timeout has passed
    record, etag = store.load(action_id)
    assert store.replace(record.model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)}), etag)
    state = body(world.get(action_id, world.agent()))
    assert (state["status"], state["decision"]) == ("expired", "denied")
    assert "action_expired" in [r.kind for r in world.audit(action_id)]


# -- idempotency ----------------------------------------------------------------------------------


def test_a_re_request_returns_the_same_action_and_another_command_under_the_key_is_a_conflict(world):
    first = ask()
    a, b = world.post(first, world.agent()), world.post(first, world.agent())
    assert (a.status_code, b.status_code) == (202, 202) and body(a)["id"] == body(b)["id"]
    assert len(world.pump()) == 1
    other = world.post({**first, "command": ["terraform", "destroy", "-auto-approve"]}, world.agent())
    assert other.status_code == 409 and body(other)["type"].endswith("/idempotency-key-reused")
    assert body(other)["field"] == "idempotency_key"
    assert world.decide(body(a)["id"], ANNA, "approve")[0] == 202
    again = world.post(first, world.agent())
    assert again.status_code == 200 and body(again)["id"] == body(a)["id"] and body(again)["status"] == "approved"
    assert [r.kind for r in world.audit(body(a)["id"])].count("action_requested") == 1


def test_twenty_identical_concurrent_requests_make_one_action(world):
    request = ask()
    barrier = threading.Barrier(20, timeout=30)

    def one(_: int) -> func.HttpResponse:
        barrier.wait()
        return world.post(request, world.agent())

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, range(20), timeout=180))
    assert {a.status_code for a in answers} == {202}
    assert len({body(a)["id"] for a in answers}) == 1
    assert len(world.pump()) == 1
    assert [r.kind for r in world.audit(body(answers[0])["id"])].count("action_requested") == 1


# -- GitHub Actions OIDC --------------------------------------------------------------------------


def test_a_github_workflow_token_is_accepted_and_its_actor_is_the_requester(world):
    response = world.post(ask("dev"), world.workflow(actor="dev-alice"))
    assert response.status_code == 200, response.get_body()
    action_id = body(response)["id"]
    world.pump()
    received = next(r.data for r in world.audit(action_id) if r.kind == "event_received")
    assert received["requester"] == ["github:login:dev-alice"] and received["repository"] == "contoso/infra"
    assert body(world.get(action_id, world.workflow()))["status"] == "approved"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"audience": "api://someone-else"}, "audience"),
        ({"repository_owner_id": 999, "repository": "mallory/infra"}, None),
        ({"issued_at": time.time() - 3600}, "expired"),
    ],
)
def test_github_tokens_for_another_audience_owner_or_expired_are_refused(world, claims, reason):
    audience = claims.pop("audience", GITHUB_AUDIENCE)
    token = world.github.issue(audience, **claims)
    response = world.post(ask("dev"), {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    if reason:
        assert body(response)["reason"] == reason
    assert world.env.drain() == []


def test_a_workflow_names_only_its_own_repository(world):
    response = world.post(ask("dev", context={"repository": "contoso/other"}), world.workflow())
    assert response.status_code == 422 and body(response)["field"] == "context.repository"


def test_the_api_key_works_and_other_tenants_see_nothing(world):
    action_id = body(world.post(ask("dev"), world.api_key()))["id"]
    assert body(world.get(action_id, world.api_key()))["status"] == "approved"
    stranger = {"X-Gatekeeper-Tenant": world.tenant_id, "x-functions-key": "wrong"}
    assert world.get(action_id, stranger).status_code == 401
    assert world.get("gate-" + "0" * 40, world.api_key()).status_code == 404


# -- hostile input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "status"),
    [
        ({"command": "x" * 9000}, "command", 422),
        ({"command": []}, "command", 422),
        ({"command": "rm -rf /\x00"}, "command", 422),
        ({"command": 42}, "command", 422),
        ({"idempotency_key": "has space"}, "idempotency_key", 422),
        ({"idempotency_key": "k" * 129}, "idempotency_key", 422),
        ({"action": "launch_missiles"}, "action", 422),
        ({"target": {"resource": "x"}}, "target.environment", 422),
        ({"timeout": "P1Y"}, "timeout", 422),
        ({"timeout": "P30D"}, "timeout", 422),
        ({"context": {"plan_digest": "md5:abc"}}, "context.plan_digest", 422),
        ({"context": {"plan_url": "javascript:alert(1)"}}, "context.plan_url", 422),
        ({"context": {"version_tags": ["v"] * 21}}, "context.version_tags", 422),
        ({"surprise": True}, "surprise", 422),
    ],
)
def test_hostile_fields_are_refused_naming_the_field(world, raw, field, status):
    response = world.post(ask(**raw), world.agent())
    assert response.status_code == status, response.get_body()
    assert body(response)["field"] == field
    assert world.env.drain() == []


def test_deep_duplicate_and_oversize_bodies_are_refused_before_anything_is_written(world):
    deep = b'{"command": "ls", "context": ' + b'{"a": ' * 200 + b"1" + b"}" * 201
    duplicate = b'{"command": "ls", "command": "rm -rf /", "action": "data_export"}'
    huge = json.dumps(ask(context={"ticket": "x" * 100_000})).encode()
    for raw, status in ((deep, 400), (duplicate, 400), (huge, 413)):
        response = world.post(raw, world.agent())
        assert response.status_code == status, (raw[:40], response.get_body())
    assert world.env.drain() == []


# -- queue down ------------------------------------------------------------------------------------


def test_queue_down_answers_503_and_the_clients_retry_queues_the_action_once(world, azurite):
    from gatekeeper.ingest.queue import QueueEventSink
    from gatekeeper.store.tables import StorageAccount
    from tests.support.outage import dead_port, storage_connection_string

    services = world.env.services
    working = services.sink
    down = StorageAccount(
        connection_string=storage_connection_string(blob=azurite.blob_port, queue=dead_port(), table=azurite.table_port)
    )
    services.__dict__["sink"] = QueueEventSink(down.bounded(), services.sealer, services.queue_name)
    services.__dict__.pop("actions", None)  # rebuilt over the sink that is down (request-path budgets)
    request = ask()
    started = time.monotonic()
    failed = world.post(request, world.agent())
    assert failed.status_code == 503 and int(failed.headers["Retry-After"]) > 0
    assert time.monotonic() - started < 5  # request-path budgets (unbounded SDK retries take over a minute)
    services.__dict__["sink"] = working
    services.__dict__.pop("actions", None)
    retried = world.post(request, world.agent())  # at once, not only after RESUBMIT_AFTER
    assert retried.status_code == 202
    assert len(world.pump()) == 1
    assert body(world.get(body(retried)["id"], world.agent()))["status"] == "pending"
    assert [r.kind for r in world.audit(body(retried)["id"])].count("action_requested") == 1


def test_an_action_is_approved_from_the_teams_card_with_its_command_shown_verbatim(world):
    """Issue 13: an L2 action approved from the Teams card path (an `adaptiveCard/action` invoke signed as the
    Teams service signs it, through the real Agents SDK host), then read back as approved through the API."""
    import asyncio

    from devstack.bot_connector import LocalBotConnector
    from devstack.botframework import LocalBotFrameworkIssuer, LocalClientCredential, card_action_activity
    from gatekeeper.teams.auth import BotTokenValidator
    from gatekeeper.teams.bot import BotHost
    from gatekeeper.teams.cards import approval_card

    app_id, secret = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "local-bot-secret"
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    card = approval_card(world.gates.decisions.system_view(action_id))
    shown = re.sub(r"\\(.)", r"\1", json.dumps(card, ensure_ascii=False).replace("\\\\", "\\"))
    assert "terraform apply -auto-approve plan.tfplan" in shown  # verbatim (Markdown-escaped on the card)
    with LocalBotFrameworkIssuer() as issuer:
        issuer.client_secrets[app_id] = secret
        with LocalBotConnector(lambda token: issuer.verify_bot_token(token, app_id)) as connector:
            activity = card_action_activity(
                service_url=connector.url + "/",
                app_id=app_id,
                user_oid=ANNA,
                tenant_id=ENTRA_TENANT,
                verb="approve",
                instance_id=action_id,
                inputs={},
            )
            token = issuer.sign_activity(app_id, activity["serviceUrl"])
            claims = BotTokenValidator(app_id, issuer.metadata_url).validate(f"Bearer {token}", activity["serviceUrl"])
            host = BotHost(LocalClientCredential(issuer.token_url, app_id, secret), app_id, ENTRA_TENANT)
            status, answer = asyncio.run(
                host.process(activity, {"Authorization": f"Bearer {token}"}, claims, world.gates.decisions)
            )
    assert status == 200 and answer["statusCode"] == 200, answer
    assert "You approved this request." in re.sub(r"\\(.)", r"\1", answer["value"]["body"][0]["items"][0]["text"])
    world.gates.runner.run_until_idle()
    state = body(world.get(action_id, world.agent()))
    assert (state["status"], state["decision"]) == ("approved", "approved")
    kinds = [r.kind for r in world.audit(action_id)]
    assert "approval_decided" in kinds
