"""The dispatcher's claim on a business key, pinned with a manual clock (issue 21 survivors).

Each test drives `EventDispatcher` over Azurite with a gateway double implementing `OrchestrationGateway`
and a fixed clock, so the lease arithmetic, its expiry boundary, the renewal on a (re)claim, the hand-back
after a failed start and the Durable extension's "already exists" answer are each checked exactly.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.ingest.dispatcher import (
    CLAIM_LEASE,
    ClaimHeld,
    Disposition,
    EventDispatcher,
    State,
    gate_input,
    gate_of,
    instance_for,
    watch_input,
)
from gatekeeper.ingest.queue import decode_message
from gatekeeper.store.tables import TablePurpose
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import github_request, http_function

DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
STATUS_PAYLOAD = SHARED_FIXTURES / "github/workflow_run.completed.payload.json"
NOW = datetime(2026, 3, 2, 10, 15, 30, 250000, tzinfo=UTC)


class WorkerDied(BaseException):
    """A worker killed inside `start`: the row stays `starting` with its lease."""


class Gateway:
    """An `OrchestrationGateway` that records calls; hooks stand in for other workers acting meanwhile."""

    def __init__(
        self,
        *,
        on_exists: Callable[[str], None] | None = None,
        on_start: Callable[[str], None] | None = None,
        start_error: BaseException | None = None,
    ):
        self.instances: dict[str, dict[str, Any]] = {}
        self.starts: list[tuple[str, str, dict[str, Any]]] = []
        self.exists_calls: list[str] = []
        self._on_exists, self._on_start, self._start_error = on_exists, on_start, start_error
        self._lock = threading.Lock()

    def exists(self, instance_id: str) -> bool:
        self.exists_calls.append(instance_id)
        if self._on_exists:
            self._on_exists(instance_id)
        return instance_id in self.instances

    def start(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> None:
        if self._on_start:
            self._on_start(instance_id)
        if self._start_error is not None:
            raise self._start_error
        with self._lock:
            self.starts.append((orchestrator, instance_id, payload))
            self.instances[instance_id] = payload


@pytest.fixture
def env(served_env):
    return served_env


def queued(env, event: str = "deployment_protection_rule", payload: dict | None = None):
    response = http_function("github_webhook")(github_request(event, payload or DPR))
    assert response.status_code == 202, response.get_body()
    [text] = env.drain()
    return decode_message(env.services.sealer, text)


def dispatcher(env, gateway, at: datetime) -> EventDispatcher:
    return EventDispatcher(env.storage, env.services.sealer, gateway, clock=lambda: at)


def table(env):
    return env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS)


def row(env, q) -> dict[str, Any]:
    return dict(table(env).get_entity("event", q.event.key_hash))


def leave_starting(env, q, event_id: str, at: datetime) -> dict[str, Any]:
    """A claimer that died inside `start`: the row is `starting`, owned by `event_id`, leased from `at`."""
    with pytest.raises(WorkerDied):
        dispatcher(env, Gateway(start_error=WorkerDied()), at).dispatch(q.event, event_id)
    stored = row(env, q)
    assert stored["state"] == "starting"
    return stored


def test_the_lease_is_now_plus_claim_lease_after_create_and_after_a_claim(env):
    status = queued(env, "workflow_run", json.loads(STATUS_PAYLOAD.read_text()))
    assert dispatcher(env, Gateway(), NOW).dispatch(status.event, "s1").disposition is Disposition.RECORDED
    created = row(env, status)
    assert created["state"] == "recorded" and created["lease_until"] == NOW + CLAIM_LEASE  # from create

    gate = queued(env)
    claimed = leave_starting(env, gate, "g1", NOW)
    assert claimed["lease_until"] == NOW + CLAIM_LEASE
    assert claimed["claim_owner"].startswith("g1/")


def test_a_reclaim_renews_the_lease_and_takes_the_claim(env, caplog):
    gate = queued(env)
    first = leave_starting(env, gate, "g1", NOW)
    later = first["lease_until"] + timedelta(seconds=7)
    seen: list[dict[str, Any]] = []
    gateway = Gateway(on_exists=lambda _: seen.append(row(env, gate)))
    with caplog.at_level(logging.INFO, logger="gatekeeper.ingest.dispatcher"):
        result = dispatcher(env, gateway, later).dispatch(gate.event, "g2")
    assert result.disposition is Disposition.STARTED
    [during] = seen  # the row while the reclaimer asks whether the dead claimer started it
    assert during["state"] == "starting"
    assert during["lease_until"] == later + CLAIM_LEASE
    assert during["claim_owner"].startswith("g2/") and during["claim_owner"] != first["claim_owner"]
    assert gateway.exists_calls == [gate.event.instance_id]
    assert gateway.starts == [("deployment_gate", gate.event.instance_id, gate_input(gate.event))]
    assert row(env, gate)["state"] == "started"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "reclaimed key" in warnings[0]


def test_a_first_claim_is_not_logged_as_a_reclaim(env, caplog):
    gate = queued(env)
    with caplog.at_level(logging.INFO, logger="gatekeeper.ingest.dispatcher"):
        assert dispatcher(env, Gateway(), NOW).dispatch(gate.event, "g1").disposition is Disposition.STARTED
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_lease_ending_exactly_now_is_reclaimable_one_microsecond_later_is_not(env):
    gate = queued(env)
    lease_until = leave_starting(env, gate, "g1", NOW)["lease_until"]
    assert lease_until == NOW + CLAIM_LEASE
    gateway = Gateway()
    # the lease still runs for one microsecond: another message is a duplicate, its own copy is retried
    assert (
        dispatcher(env, gateway, lease_until - timedelta(microseconds=1)).dispatch(gate.event, "other").disposition
        is Disposition.DUPLICATE
    )
    with pytest.raises(ClaimHeld):
        dispatcher(env, gateway, lease_until - timedelta(microseconds=1)).dispatch(gate.event, "g1")
    assert gateway.starts == [] and row(env, gate)["state"] == "starting"
    # the lease ends exactly now: taken over and started
    assert dispatcher(env, gateway, lease_until).dispatch(gate.event, "other").disposition is Disposition.STARTED
    assert len(gateway.starts) == 1


def test_concurrent_reclaimers_after_expiry_start_exactly_once(env):
    gate = queued(env)
    later = leave_starting(env, gate, "g1", NOW)["lease_until"] + timedelta(seconds=1)
    gateway = Gateway()
    barrier = threading.Barrier(8, timeout=30)

    def worker(n: int) -> Disposition:
        barrier.wait()
        return dispatcher(env, gateway, later).dispatch(gate.event, f"w{n}").disposition

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(worker, range(8), timeout=120))
    assert sorted(outcomes) == sorted([Disposition.STARTED] + [Disposition.DUPLICATE] * 7)
    assert len(gateway.starts) == 1 and len(gateway.exists_calls) == 1
    assert row(env, gate)["state"] == "started"


def test_a_claim_lost_between_read_and_move_is_a_duplicate(env):
    """Worker A read the expired row; before its ETag-conditional move, worker B reclaimed it."""
    gate = queued(env)
    later = leave_starting(env, gate, "g1", NOW)["lease_until"] + timedelta(seconds=1)
    stale = table(env).get_entity("event", gate.event.key_hash)  # A's read
    b = Gateway()
    assert dispatcher(env, b, later).dispatch(gate.event, "b").disposition is Disposition.STARTED
    # A's move on the ETag it read fails: it must not call the gateway
    a = Gateway()
    assert (
        EventDispatcher._move(
            table(env), gate.event.key_hash, stale.metadata["etag"], State.STARTING, owner="a/x", now=later
        )
        is None
    )
    assert dispatcher(env, a, later).dispatch(gate.event, "a").disposition is Disposition.DUPLICATE
    assert a.exists_calls == [] and a.starts == [] and len(b.starts) == 1


def test_a_second_worker_moving_the_row_during_exists_makes_the_claimer_warn_but_still_start(env, caplog):
    """The claimer's lease ran out while it was asking: another worker re-claimed the row, so the claimer's
    move to `started` fails. It still started the gate (it called start), and says so in a warning."""
    gate = queued(env)

    def another_worker_reclaims(_: str) -> None:
        current = table(env).get_entity("event", gate.event.key_hash)
        table(env).update_entity(
            {"PartitionKey": "event", "RowKey": gate.event.key_hash, "claim_owner": "other/y"},
            mode=UpdateMode.MERGE,
            etag=current.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )

    gateway = Gateway(on_exists=another_worker_reclaims)
    with caplog.at_level(logging.INFO, logger="gatekeeper.ingest.dispatcher"):
        result = dispatcher(env, gateway, NOW).dispatch(gate.event, "g1")
    assert result.disposition is Disposition.STARTED and len(gateway.starts) == 1
    stored = row(env, gate)
    assert stored["state"] == "starting" and stored["claim_owner"] == "other/y"  # not overwritten
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "expired before the gate was marked started" in warnings[0]


def test_a_start_answered_already_exists_is_marked_started_and_a_duplicate(env):
    gate = queued(env)
    gateway = Gateway(
        start_error=RuntimeError(f"An Orchestration instance with the ID {gate.event.instance_id} already exists.")
    )
    result = dispatcher(env, gateway, NOW).dispatch(gate.event, "g1")
    assert result.disposition is Disposition.DUPLICATE
    assert row(env, gate)["state"] == "started"
    assert dispatcher(env, Gateway(), NOW).dispatch(gate.event, "g2").disposition is Disposition.DUPLICATE


def test_a_failed_start_hands_the_row_back_and_reraises(env):
    gate = queued(env)
    failure = RuntimeError("storage unavailable")
    with pytest.raises(RuntimeError) as raised:
        dispatcher(env, Gateway(start_error=failure), NOW).dispatch(gate.event, "g1")
    assert raised.value is failure  # the start's own error, not something from the hand-back
    assert row(env, gate)["state"] == "received"
    # claimable again at once, at the same instant, by the message's retry
    retry = Gateway()
    assert dispatcher(env, retry, NOW).dispatch(gate.event, "g1").disposition is Disposition.STARTED
    assert len(retry.starts) == 1 and row(env, gate)["state"] == "started"


def test_claim_held_only_for_the_same_event_id(env):
    gate = queued(env)
    leave_starting(env, gate, "ab1", NOW)
    gateway = Gateway()
    with pytest.raises(ClaimHeld):
        dispatcher(env, gateway, NOW + timedelta(seconds=1)).dispatch(gate.event, "ab1")
    for other in ("ab", "ab1x", "b1"):  # a prefix of the id, an id it prefixes, another id
        assert (
            dispatcher(env, gateway, NOW + timedelta(seconds=1)).dispatch(gate.event, other).disposition
            is Disposition.DUPLICATE
        )
    assert gateway.starts == [] and gateway.exists_calls == []


def test_a_status_event_is_recorded_once(env):
    status = queued(env, "workflow_run", json.loads(STATUS_PAYLOAD.read_text()))
    gateway = Gateway()
    assert dispatcher(env, gateway, NOW).dispatch(status.event, "s1").disposition is Disposition.RECORDED
    assert row(env, status)["state"] == "recorded"
    assert dispatcher(env, gateway, NOW).dispatch(status.event, "s2").disposition is Disposition.DUPLICATE
    assert dispatcher(env, gateway, NOW).dispatch(status.event, "s1").disposition is Disposition.DUPLICATE
    assert gateway.starts == [] and gateway.exists_calls == []


def test_the_lease_is_five_minutes(env):
    """CLAIM_LEASE's documented value: above a claimer's two-minute worst case (one `exists` and one `start`
    of at most 60 s each), below the host's ten-minute queue-message lease. A claim at 10:15:30.25 holds
    until 10:20:30.25 and is taken over from then on."""
    gate = queued(env)
    stored = leave_starting(env, gate, "g1", NOW)
    assert stored["lease_until"] == datetime(2026, 3, 2, 10, 20, 30, 250000, tzinfo=UTC)
    gateway = Gateway()
    at_lease_end = datetime(2026, 3, 2, 10, 20, 30, 250000, tzinfo=UTC)
    assert (
        dispatcher(env, gateway, at_lease_end - timedelta(microseconds=1)).dispatch(gate.event, "other").disposition
        is Disposition.DUPLICATE
    )
    assert dispatcher(env, gateway, at_lease_end).dispatch(gate.event, "other").disposition is Disposition.STARTED


def test_a_hand_back_that_cannot_be_written_still_raises_the_starts_own_error(env, caplog):
    """The table fails too (here the row is gone, so the conditional update is a 404): the start's error is
    the one raised, and the hand-back failure is only a warning; the lease then expires on its own."""
    gate = queued(env)
    failure = RuntimeError("storage unavailable")

    def row_vanishes(_: str) -> None:
        table(env).delete_entity("event", gate.event.key_hash)

    gateway = Gateway(on_start=row_vanishes, start_error=failure)
    with caplog.at_level(logging.INFO, logger="gatekeeper.ingest.dispatcher"), pytest.raises(RuntimeError) as raised:
        dispatcher(env, gateway, NOW).dispatch(gate.event, "g1")
    assert raised.value is failure
    assert any("could not hand back the claim" in r.getMessage() for r in caplog.records)


def _deployment_status(env, status: str) -> PipelineEvent:
    return PipelineEvent(
        tenant_id=env.tenant_id,
        source=EventSource.GENERIC,
        kind=EventKind.DEPLOYMENT_STATUS,
        run_id="r-17",
        environment="production",
        status=status,
    )


def test_a_finished_deployment_starts_one_watch_with_its_ids_and_its_other_outcome_none(env):
    """Fifth day: the watch path of `dispatch`. A finished deployment starts the post-deploy watch (ids only, the
    gate it follows); the deployment's later failure is a second event of the same deployment, recorded apart but
    never a second watch; a deployment still in progress starts nothing."""
    gateway = Gateway()
    success, failure = _deployment_status(env, "success"), _deployment_status(env, "failure")
    first = dispatcher(env, gateway, NOW).dispatch(success, "d1")
    assert (first.disposition, first.instance_id) == (Disposition.STARTED, instance_for(success))
    assert gateway.starts == [("post_deploy_watch", instance_for(success), watch_input(success))]
    assert watch_input(success)["gate_id"] == gate_of(success) is not None
    second = dispatcher(env, gateway, NOW).dispatch(failure, "d2")
    assert second.disposition is Disposition.DUPLICATE and len(gateway.starts) == 1
    assert table(env).get_entity("event", failure.key_hash)["state"] == "started"
    running = _deployment_status(env, "in_progress")
    assert dispatcher(env, gateway, NOW).dispatch(running, "d3").disposition is Disposition.RECORDED
    assert len(gateway.starts) == 1
