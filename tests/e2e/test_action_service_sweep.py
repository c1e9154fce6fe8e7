"""The action-approval API (gatekeeper/actions/service.py) through its registered routes, the local runner and
Azurite: cases a hand sweep of planted bugs found untested (docs/mutation.md, second sweep). The world is
tests/e2e/test_action_flows.py's."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from gatekeeper.contracts.gate import chain_instance_id
from tests.e2e.test_action_flows import (  # noqa: F401 - the fixtures are used by name
    ANNA,
    PIET,
    World,
    ask,
    body,
    entra,
    github,
    upn,
    world,
)

pytestmark = pytest.mark.azurite


def _refused_as_not_approved(world: World, action_id: str) -> None:
    refused = world.report(action_id, {"outcome": "executed", "exit_code": 0}, world.agent())
    assert refused.status_code == 409 and body(refused)["type"].endswith("/not-approved")
    assert body(refused)["field"] == "outcome"
    reports = [r.data for r in world.audit(action_id) if r.kind == "action_reported"]
    assert reports and all(r["refused"] and not r["approved"] for r in reports)
    assert body(world.get(action_id, world.agent()))["outcome"] is None


def test_executed_is_refused_for_a_pending_action_not_only_a_denied_one(world: World):
    """The step client must never run a command that no one approved; a report of `executed` while the
    action still waits is an attempt, refused and audited, never recorded as the outcome."""
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    assert body(world.get(action_id, world.agent()))["status"] == "pending"
    _refused_as_not_approved(world, action_id)
    # approval afterwards does not turn the refused attempt into an outcome
    assert world.decide(action_id, ANNA, "approve")[0] == 202
    assert body(world.get(action_id, world.agent()))["outcome"] is None


@pytest.mark.parametrize("closing", ["cancelled", "human_only"])
def test_executed_is_refused_for_a_cancelled_or_human_only_action(world: World, closing: str):
    if closing == "human_only":
        action_id = body(world.post(ask(action="secret_access"), world.agent()))["id"]
    else:
        action_id = body(world.post(ask(), world.agent()))["id"]
        world.pump()
        world.durable.instances[chain_instance_id(action_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
        assert world.cancel(action_id, world.agent()).status_code == 200
    _refused_as_not_approved(world, action_id)


def test_an_outcome_is_reported_once(world: World):
    action_id = body(world.post(ask("dev"), world.agent()))["id"]  # L0: approved at once
    first = world.report(action_id, {"outcome": "executed", "exit_code": 0}, world.agent())
    assert first.status_code == 202
    again = world.report(action_id, {"outcome": "skipped", "detail": "changed my mind"}, world.agent())
    assert again.status_code == 409 and body(again)["type"].endswith("/already-reported")
    assert body(world.get(action_id, world.agent()))["outcome"] == "executed"
    assert [r.data["outcome"] for r in world.audit(action_id) if r.kind == "action_reported"] == ["executed"]


def test_a_workflow_request_is_about_its_own_repository_whatever_the_body_spells(world: World):
    """A GitHub job asks for the repository of its OIDC token: named in another case it is the same one, and
    left out it is still that one (never "no repository"); it is recorded as the token names it."""
    for context in ({"repository": "CONTOSO/Infra"}, {"ref": "refs/heads/main"}):
        response = world.post(ask("dev", context=context), world.workflow())
        assert response.status_code == 200, response.get_body()
        action_id = body(response)["id"]
        world.pump()
        received = next(r.data for r in world.audit(action_id) if r.kind == "event_received")
        assert received["repository"] == "contoso/infra", context


def test_an_idempotency_key_stands_for_the_resource_too(world: World):
    """The same command against another resource under the same key is another request, never the first
    one's answer (an approval of one resource group must not be reused for another)."""
    first = ask()
    assert world.post(first, world.agent()).status_code == 202
    elsewhere = {**first, "target": {"environment": "production", "resource": "rg-fabrikam-prod"}}
    other = world.post(elsewhere, world.agent())
    assert other.status_code == 409 and body(other)["type"].endswith("/idempotency-key-reused")


def test_the_requests_own_timeout_is_recorded_from_the_moment_it_was_asked(world: World):
    action_id = body(world.post(ask(timeout="PT1M"), world.agent()))["id"]
    store = world.env.services.actions._actions(world.tenant_id)
    record, _ = store.load(action_id)
    assert record.expires_at is not None and record.expires_at - record.created_at == timedelta(minutes=1)
    (requested,) = [r.data for r in world.audit(action_id) if r.kind == "action_requested"]
    assert requested["expires_at"] == record.expires_at.isoformat()
    untimed = body(world.post(ask(), world.agent()))["id"]
    assert store.load(untimed)[0].expires_at is None


def test_decided_by_names_the_deciding_voter_not_a_later_refused_one(world: World):
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    assert world.decide(action_id, PIET, "reject")[0] == 202
    assert world.decide(action_id, ANNA, "approve")[0] in (409, 410)  # too late: not counted
    state = body(world.get(action_id, world.agent()))
    assert (state["status"], state["decided_by"]) == ("denied", upn(PIET))


def _at_once(count: int, call) -> list[int]:
    barrier = threading.Barrier(count, timeout=30)

    def one(_: int) -> int:
        headers = call.headers()
        barrier.wait()
        return call(headers).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count), timeout=180))


class _Call:
    def __init__(self, world: World, send) -> None:
        self.world, self.send = world, send

    def headers(self) -> dict[str, str]:
        return self.world.agent()

    def __call__(self, headers: dict[str, str]):
        return self.send(headers)


def test_concurrent_reports_record_one_outcome(world: World):
    """The report is an ETag-conditional write: of concurrent reports one is recorded, the others are
    refused (already reported, or the row changed meanwhile), and only that one is audited as recorded."""
    action_id = body(world.post(ask("dev"), world.agent()))["id"]
    statuses = _at_once(8, _Call(world, lambda h: world.report(action_id, {"outcome": "executed", "exit_code": 0}, h)))
    assert sorted(statuses) == [202] + [409] * 7, statuses
    recorded = [r for r in world.audit(action_id) if r.kind == "action_reported" and not r.data["refused"]]
    assert len(recorded) == 1


def test_concurrent_cancels_close_the_action_once(world: World):
    action_id = body(world.post(ask(), world.agent()))["id"]
    world.pump()
    world.durable.instances[chain_instance_id(action_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    statuses = _at_once(8, _Call(world, lambda h: world.cancel(action_id, h)))
    assert sorted(statuses) == [200] + [409] * 7, statuses
    assert [r.kind for r in world.audit(action_id)].count("action_cancelled") == 1


_ = PIET
