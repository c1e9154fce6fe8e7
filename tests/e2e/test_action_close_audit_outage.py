"""A cancel or an expiry that ended the action's approval chain, then whose audit append met an outage (503).
The close cannot be undone once the chain has ended, so the action stayed closed and was never audited: the
requester's retried cancel heard 409 "already cancelled", and the status route answered "expired" for good.
Now the next reader (the retried cancel, the status route) audits the close, once. The rig is
tests/e2e/test_action_flows.py's (routes, the real queue and dispatcher, the local Durable HTTP API, Azurite and
the tenant's real audit log), with the audit log behind a port double that refuses one append of one kind."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatekeeper.contracts.gate import chain_instance_id
from tests.e2e.test_action_flows import (  # noqa: F401 - the fixtures are used by name
    World,
    ask,
    body,
    entra,
    github,
    world,
)
from tests.support.outage import audit_down_once as audit_logs_down_once

pytestmark = pytest.mark.azurite


def audit_down_once(world: World, kind: str) -> None:
    """The tenant's audit log for the action routes, unreachable for the first entry of `kind`; assigned before
    the action service is built, so it takes this one."""
    world.env.services.__dict__["audit_for"] = audit_logs_down_once(world.env.services.audit_for, kind)


def pending_with_a_running_chain(world: World, **overrides: Any) -> str:
    answer = world.post(ask(**overrides), world.agent())
    assert answer.status_code == 202, answer.get_body()
    action_id = body(answer)["id"]
    world.pump()
    # the Durable HTTP API knows the chain the runner is running, so withdrawing it ends it
    world.durable.instances[chain_instance_id(action_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    return action_id


def kinds(world: World, action_id: str, kind: str) -> list[Any]:
    return [r for r in world.audit(action_id) if r.kind == kind]


def test_a_cancel_that_ended_the_chain_and_whose_audit_failed_is_audited_once_by_its_retry(world):
    audit_down_once(world, "action_cancelled")
    action_id = pending_with_a_running_chain(world)
    first = world.cancel(action_id, world.agent())
    assert first.status_code == 503, first.get_body()
    assert len(world.durable.requests_to("/raiseEvent/", "POST")) == 1, "the chain was told: it has ended"
    again = world.cancel(action_id, world.agent())
    assert again.status_code == 200, again.get_body()
    assert body(again)["status"] == "cancelled"
    [entry] = kinds(world, action_id, "action_cancelled")
    assert entry.data["chain_ended"] is True and entry.data["reason"] == "cancelled"
    assert world.cancel(action_id, world.agent()).status_code == 409, "done: a later cancel is refused"
    assert body(world.get(action_id, world.agent()))["status"] == "cancelled"
    assert len(kinds(world, action_id, "action_cancelled")) == 1, "audited once"
    assert len(world.durable.requests_to("/raiseEvent/", "POST")) == 1, "the chain is not told twice"


def test_an_expiry_that_ended_the_chain_and_whose_audit_failed_is_audited_once_by_the_next_status_read(world):
    audit_down_once(world, "action_expired")
    action_id = pending_with_a_running_chain(world, timeout="PT1M")
    store = world.env.services.actions._actions(world.tenant_id)  # age the request: its timeout has passed
    record, etag = store.load(action_id)
    assert store.replace(record.model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)}), etag)
    first = world.get(action_id, world.agent())
    assert first.status_code == 503, first.get_body()
    assert kinds(world, action_id, "action_expired") == []
    state = body(world.get(action_id, world.agent()))
    assert (state["status"], state["decision"]) == ("expired", "denied")
    [entry] = kinds(world, action_id, "action_expired")
    assert entry.actor == "system" and entry.data["chain_ended"] is True
    assert body(world.get(action_id, world.agent()))["status"] == "expired"
    assert len(kinds(world, action_id, "action_expired")) == 1, "audited once"
    closed, _ = store.load(action_id)
    assert closed.close_audit_from is None, "noted as audited: later reads look for nothing"


def test_a_close_whose_closer_died_is_left_to_it_within_its_lease_then_audited_once_by_concurrent_readers(world):
    """The closer wrote the closed row and died before its audit append (nothing handed back). A status read
    within the closer's lease leaves the close alone (the closer may be slow); after it, of several readers at
    once exactly one audits it (ETag-conditional take-over), and every one answers "cancelled". The closer died
    before it knew whether it ended the approval chain: the one taking over ends it first (withdraw, as the live
    cancel does; it used to audit `chain_ended: None` and leave the chain running)."""
    action_id = pending_with_a_running_chain(world)
    store = world.env.services.actions._actions(world.tenant_id)
    record, etag = store.load(action_id)
    log = world.env.services.audit_for(world.tenant_id)
    now = datetime.now(UTC)
    closed = record.model_copy(
        update={
            "closed": "cancelled",
            "closed_at": now,
            "closed_by": "agent",
            "close_audit_from": log.head().size,
            "close_audit_until": now + timedelta(minutes=5),
        }
    )
    etag = store.replace(closed, etag)
    assert etag
    assert body(world.get(action_id, world.agent()))["status"] == "cancelled"
    assert kinds(world, action_id, "action_cancelled") == [], "within the closer's lease: left to it"
    assert store.replace(closed.model_copy(update={"close_audit_until": now - timedelta(seconds=1)}), etag)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: world.get(action_id, world.agent()), range(4)))
    assert [body(a)["status"] for a in answers] == ["cancelled"] * 4
    [entry] = kinds(world, action_id, "action_cancelled")
    assert entry.actor == "agent" and entry.data["chain_ended"] is True, "the chain was ended by the one finishing"
    assert len(world.durable.requests_to("/raiseEvent/", "POST")) == 1, "told once, by the one that took it over"
    assert store.load(action_id)[0].close_audit_from is None


def test_a_dead_closers_close_is_left_by_a_reader_that_cannot_end_the_chain_and_finished_by_the_status_route(world):
    """The re-request route has no Durable client, so it cannot end a chain the dead closer may have left running:
    it answers without auditing the close (an entry saying `chain_ended: None` would be final); the status route
    then ends the chain and audits it, once."""
    request = ask()
    answer = world.post(request, world.agent())
    assert answer.status_code == 202, answer.get_body()
    action_id = body(answer)["id"]
    world.pump()
    world.durable.instances[chain_instance_id(action_id)] = {"name": "approval_chain", "runtimeStatus": "Running"}
    store = world.env.services.actions._actions(world.tenant_id)
    record, etag = store.load(action_id)
    now = datetime.now(UTC)
    closed = record.model_copy(
        update={
            "closed": "cancelled",
            "closed_at": now,
            "closed_by": "agent",
            "close_audit_from": world.env.services.audit_for(world.tenant_id).head().size,
            "close_audit_until": now - timedelta(seconds=1),  # the closer's lease has passed: it died
        }
    )
    assert store.replace(closed, etag)
    again = world.post(request, world.agent())  # the same idempotency key: the request route, no gateway
    assert again.status_code == 200 and body(again)["status"] == "cancelled", again.get_body()
    assert kinds(world, action_id, "action_cancelled") == [], "left to a reader that can end the chain"
    assert world.durable.requests_to("/raiseEvent/", "POST") == []
    assert body(world.get(action_id, world.agent()))["status"] == "cancelled"
    [entry] = kinds(world, action_id, "action_cancelled")
    assert entry.data["chain_ended"] is True
    assert len(world.durable.requests_to("/raiseEvent/", "POST")) == 1
