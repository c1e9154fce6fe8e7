"""Concurrency at the edge: the same event sent many times at once through the registered HTTP functions (the
GitHub webhook with one X-GitHub-Delivery, the action route with one idempotency key), each copy answered
alike, then every queued copy handed to the real dispatcher trigger at once: exactly one orchestration
starts. Two tenants with the same business key each get their own. State in Azurite, the Durable HTTP API
served locally (slowed down to widen the race)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import azure.functions as func
import pytest

from gatekeeper.actions.store import ANNOUNCE_LEASE, ActionRecord, ActionStore, action_key
from gatekeeper.errors import DependencyUnavailable
from gatekeeper.gates.store import GateIndex
from gatekeeper.policy.store import PolicyStore
from gatekeeper.services import set_services
from tests.conftest import ROOT
from tests.support.gatekeeper_env import API_KEY, GatekeeperEnv, github_request, http_function, make_env
from tests.support.outage import audit_down_once
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

COPIES = 12
DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
T = TypeVar("T")


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path) -> Iterator[GatekeeperEnv]:
    env = make_env(storage_connection_string, tmp_path / "keys")
    set_services(env.services)
    http_function("github_webhook")  # index the app once, before any thread looks a function up
    yield env
    set_services(None)


def at_once(n: int, call: Callable[[int], T]) -> list[T]:
    """`n` calls released together by a barrier, every one answered within the timeout."""
    barrier = threading.Barrier(n, timeout=30)

    def one(i: int) -> T:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n), timeout=180))


def dispatch_all_at_once(env: GatekeeperEnv, durable: Any) -> list[BaseException | None]:
    """Every queued message to the registered queue trigger at once, as many workers would take them."""
    messages = env.drain()
    function = http_function("dispatch_pipeline_events")

    def one(i: int) -> BaseException | None:
        try:
            body = messages[i].encode()
            run_on_worker(function(func.QueueMessage(id=f"m{i}", body=body), client=durable.client_binding))
        except Exception as exc:  # the host would put the message back: count it
            return exc
        return None

    return at_once(len(messages), one)


def starts_for(durable: Any, tenant_id: str) -> list[dict[str, Any]]:
    return [body for _, body in durable.posts("/orchestrators/") if body.get("tenant_id") == tenant_id]


def test_one_github_delivery_sent_many_times_at_once_is_answered_alike_and_starts_one_gate(env, durable):
    delivery = str(uuid.uuid4())
    responses = at_once(
        COPIES,
        lambda _: http_function("github_webhook")(github_request("deployment_protection_rule", DPR, delivery=delivery)),
    )
    assert [r.status_code for r in responses] == [202] * COPIES
    answers = [json.loads(r.get_body()) for r in responses]
    assert len({a["businessKey"] for a in answers}) == 1, "every copy is the same gate request"
    durable.delay("/orchestrators/", 0.3)
    failures = dispatch_all_at_once(env, durable)
    assert failures == [None] * len(failures), failures
    [start] = starts_for(durable, env.tenant_id)
    assert start["instance_id"].startswith("gate-")


def action_request(tenant_id: str, key: str) -> func.HttpResponse:
    body = {
        "command": "terraform apply -auto-approve plan.tfplan",
        "action": "infrastructure_change",
        "target": {"environment": "production", "resource": "rg-contoso-prod"},
        "idempotency_key": key,
    }
    headers = {"X-Gatekeeper-Tenant": tenant_id, "x-functions-key": API_KEY, "Content-Type": "application/json"}
    request = func.HttpRequest("POST", "http://localhost/api/actions", headers=headers, body=json.dumps(body).encode())
    return http_function("action_request")(request)


def test_one_action_request_sent_many_times_at_once_is_one_action_and_one_gate(env, durable):
    key = "run-42:apply-" + uuid.uuid4().hex[:8]
    responses = at_once(COPIES, lambda _: action_request(env.tenant_id, key))
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 202} and len(statuses) == 1, [r.get_body() for r in responses]
    ids = {json.loads(r.get_body())["id"] for r in responses}
    assert len(ids) == 1, "every copy is answered with the same action"
    durable.delay("/orchestrators/", 0.3)
    failures = dispatch_all_at_once(env, durable)
    assert failures == [None] * len(failures), failures
    [start] = starts_for(durable, env.tenant_id)
    assert start["instance_id"] == ids.pop()


def stored_action_record(tenant_id: str, created: datetime) -> ActionRecord:
    """An L2 action as the service would claim it, under a fresh idempotency key, for the store-level tests."""
    return ActionRecord(
        action_id="gate-" + uuid.uuid4().hex,
        tenant_id=tenant_id,
        idempotency_key="k",
        fingerprint="f" * 64,
        command="terraform apply",
        action="deploy",
        environment="production",
        credential="api_key",
        caller_key="api_key:x",
        level="L2",
        created_at=created,
        event={"run_id": action_key(tenant_id, "k-" + uuid.uuid4().hex[:8])},
    )


def test_a_duplicate_that_writes_the_action_row_first_does_not_fail_the_request_that_claimed_the_key(env):
    """The interleaving behind a 500 once seen in CI: the creator claims the key; a duplicate finds the claim,
    finds no action row yet and writes it; then the creator writes its row. Both answer the same action."""
    store = ActionStore(env.storage, env.tenant_id, env.services.cipher)
    mine = stored_action_record(env.tenant_id, datetime.now(UTC))
    assert store.claim_key(mine) is None, "the creator's first write: the key is its own"
    duplicate = store.claim(mine)
    assert (duplicate.created, duplicate.record) == (False, mine)
    cancelled = mine.model_copy(update={"closed": "cancelled"})
    loaded = store.load(mine.action_id)
    assert loaded is not None and store.replace(cancelled, loaded[1]), "somebody changes the action meanwhile"
    store.write_action_row(mine)  # the creator's second write finds the row there, and leaves it alone
    after = store.load(mine.action_id)
    assert after is not None and after[0] == cancelled


class IndexDownOnce(GateIndex):
    """The shared gate index, unreachable for its first write (an outage between the claim and the index)."""

    def __init__(self, storage: Any) -> None:
        super().__init__(storage)
        self.down = True

    def put(self, instance_id: str, tenant_id: str) -> None:
        if self.down:
            self.down = False
            raise DependencyUnavailable("the gate index did not answer", code="storage-unavailable")
        super().put(instance_id, tenant_id)


def action_status(tenant_id: str, action_id: str, durable: Any) -> func.HttpResponse:
    headers = {"X-Gatekeeper-Tenant": tenant_id, "x-functions-key": API_KEY}
    url = f"http://localhost/api/actions/{action_id}"
    request = func.HttpRequest("GET", url, headers=headers, body=b"", route_params={"action_id": action_id})
    return run_on_worker(http_function("action_status")(request, client=durable.client_binding))


@pytest.mark.parametrize("down", ["index", "audit"])
def test_an_action_whose_creator_failed_after_claiming_the_key_is_finished_by_the_retry_once(env, durable, down):
    """The request that claims the key then indexes the action, audits it and queues its event. An outage
    in between used to leave the claim half-done for good: the retry was answered "pending" with a status URL
    that said 404 forever, the action was never audited as requested and its event never queued."""
    if down == "index":
        env.services.__dict__["index"] = IndexDownOnce(env.storage)
    else:
        env.services.__dict__["audit_for"] = audit_down_once(env.services.audit_for, "action_requested")
    key = "run-43:apply-" + uuid.uuid4().hex[:8]
    first = action_request(env.tenant_id, key)
    assert first.status_code == 503, first.get_body()
    assert env.queued_texts() == [], "nothing queued by the request that failed"
    again = action_request(env.tenant_id, key)
    assert again.status_code in (200, 202), again.get_body()
    action_id = json.loads(again.get_body())["id"]
    status = action_status(env.tenant_id, action_id, durable)
    assert status.status_code == 200, status.get_body()
    assert json.loads(status.get_body())["id"] == action_id
    third = action_request(env.tenant_id, key)  # a later re-request changes nothing
    assert json.loads(third.get_body())["id"] == action_id
    log = env.services.audit_for(env.tenant_id)
    requested = [r.instance_id for r in getattr(log, "log", log).records() if r.kind == "action_requested"]
    assert requested == [action_id], "audited as requested exactly once"
    assert len(env.queued_texts()) == 1, "its event queued once"


L2_POLICY = {
    "version": 1,
    "defaults": {
        "level": "L2",
        "approval": {"stages": [{"name": "leads", "approvers": [str(uuid.UUID(int=0xA))], "timeout": "PT1H"}]},
    },
}


def after_request(tenant_id: str, action_id: str, route: str, durable: Any) -> func.HttpResponse:
    """`POST /api/actions/{id}/cancel` or `.../report` (outcome skipped) by the credential that asked."""
    headers = {"X-Gatekeeper-Tenant": tenant_id, "x-functions-key": API_KEY, "Content-Type": "application/json"}
    body = json.dumps({"outcome": "skipped"}).encode() if route == "report" else b""
    url = f"http://localhost/api/actions/{action_id}/{route}"
    request = func.HttpRequest("POST", url, headers=headers, body=body, route_params={"action_id": action_id})
    if route == "report":
        return http_function("action_report")(request)
    return run_on_worker(http_function("action_cancel")(request, client=durable.client_binding))


@pytest.mark.parametrize("route", ["cancel", "report"])
def test_a_cancel_or_report_whose_audit_failed_is_not_kept_so_its_retry_records_and_audits_it_once(env, durable, route):
    """The row was changed, then the audit append met an outage (503): the retry used to hear 409 (already
    cancelled, already reported) and the change was never audited. Now the row is put back for the retry."""
    kind = {"cancel": "action_cancelled", "report": "action_reported"}[route]
    PolicyStore(env.storage, env.tenant_id).publish(json.dumps(L2_POLICY), published_by="tests")  # people decide
    env.services.__dict__["audit_for"] = audit_down_once(env.services.audit_for, kind)
    asked = action_request(env.tenant_id, "run-44:apply-" + uuid.uuid4().hex[:8])
    assert asked.status_code == 202, asked.get_body()
    action_id = json.loads(asked.get_body())["id"]
    first = after_request(env.tenant_id, action_id, route, durable)
    assert first.status_code == 503, first.get_body()
    again = after_request(env.tenant_id, action_id, route, durable)
    assert again.status_code in (200, 202), again.get_body()
    log = env.services.audit_for(env.tenant_id)
    entries = [r.kind for r in getattr(log, "log", log).records() if r.instance_id == action_id and r.kind == kind]
    assert entries == [kind], "audited once"
    assert after_request(env.tenant_id, action_id, route, durable).status_code == 409, "and then it is done"


def test_of_the_re_requests_of_an_action_whose_creator_died_exactly_one_takes_over_and_only_after_its_lease(env):
    """A creator that died between claiming the key and announcing the action hands nothing back: a
    re-request within its lease leaves it alone (it may be slow, not dead); after the lease exactly one of
    several identical re-requests takes over; once announced, nobody does."""
    store = ActionStore(env.storage, env.tenant_id, env.services.cipher)
    created = datetime.now(UTC)
    mine = stored_action_record(env.tenant_id, created)
    assert store.claim(mine).created
    duplicate = store.claim(mine)
    assert not duplicate.created and not duplicate.announced
    assert not store.take_over(mine, created + ANNOUNCE_LEASE / 2), "the creator may still be at it"
    later = created + ANNOUNCE_LEASE + timedelta(seconds=1)
    assert [store.take_over(mine, later) for _ in range(3)] == [True, False, False]
    store.hand_back(mine, later + ANNOUNCE_LEASE)  # the one that took over failed too: the next goes on at once
    assert store.take_over(mine, later)
    store.mark_announced(mine)
    assert store.claim(mine).announced and not store.take_over(mine, later + ANNOUNCE_LEASE * 10)


GENERIC = json.loads((ROOT / "tests/fixtures/generic/gate-request.json").read_text())


def generic_request(tenant_id: str, run_id: str) -> func.HttpResponse:
    body = json.dumps({**GENERIC, "runId": run_id}).encode()
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": tenant_id, "x-functions-key": API_KEY}
    return http_function("generic_events")(
        func.HttpRequest("POST", "http://localhost/api/events", headers=headers, body=body)
    )


def test_two_tenants_sending_the_same_business_key_at_once_each_start_their_own_gate(env, durable):
    mine = env.services.registry.get(env.tenant_id)
    assert mine is not None
    other = "t" + uuid.uuid4().hex[:12]  # another MSP client with the same CI conventions and its own key
    env.services.registry.import_records(
        [
            mine.model_copy(
                update={"tenant_id": other, "display_name": "Fabrikam", "identities": (), "entra_tenant_ids": ()}
            )
        ]
    )
    tenants = (env.tenant_id, other)
    run_id = uuid.uuid4().hex[:8]
    responses = at_once(COPIES, lambda i: generic_request(tenants[i % 2], run_id))
    assert [r.status_code for r in responses] == [202] * len(responses), [r.get_body() for r in responses]
    assert len({json.loads(r.get_body())["businessKey"] for r in responses}) == 1, "the same key in both tenants"
    durable.delay("/orchestrators/", 0.3)
    failures = dispatch_all_at_once(env, durable)
    assert failures == [None] * len(failures), failures
    [ours], [theirs] = starts_for(durable, env.tenant_id), starts_for(durable, other)
    assert ours["instance_id"] != theirs["instance_id"]
