"""Deduplication and gate start: the real queue trigger and the real DurableOrchestrationClient against a
local server speaking the Durable Functions HTTP API, with the dedupe records in Azurite."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func
import pytest

from functions.durable_gateway import DurableClientGateway
from gatekeeper.ingest.dispatcher import ClaimHeld, Disposition, EventDispatcher, gate_input
from gatekeeper.ingest.queue import decode_message
from gatekeeper.store.tables import TablePurpose
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import github_request, http_function, make_env
from tests.support.worker_loop import run_on_worker, worker_loop

DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())


@pytest.fixture
def env(served_env):
    return served_env


def deliver(env, event: str, payload: dict, delivery: str | None = None) -> None:
    response = http_function("github_webhook")(github_request(event, payload, delivery=delivery))
    assert response.status_code == 202, response.get_body()


def run_dispatcher(env, durable) -> None:
    """What the Functions host does: hand each queued message to the trigger with a client binding."""
    for text in env.drain():
        trigger(text.encode(), durable)


def trigger(body: bytes, durable) -> None:
    """Invoke the registered trigger as the worker does: an awaited coroutine given the binding JSON."""
    function = http_function("dispatch_pipeline_events")
    run_on_worker(function(func.QueueMessage(id="x", body=body), client=durable.client_binding))


def gateway_for(durable) -> DurableClientGateway:
    """The gateway on a loop running in another thread, as in the worker (dispatch runs off-loop)."""
    return DurableClientGateway(df.DurableOrchestrationClient(durable.client_binding), worker_loop())


def started(durable) -> list[tuple[str, dict]]:
    return durable.posts("/orchestrators/")


def test_a_gate_request_starts_one_orchestration_with_the_derived_instance_id(env, durable):
    deliver(env, "deployment_protection_rule", DPR)
    run_dispatcher(env, durable)
    [(path, body)] = started(durable)
    assert path.startswith("/durabletask/orchestrators/deployment_gate/gate-")
    instance_id = path.rsplit("/", 1)[1]
    assert body["instance_id"] == instance_id and body["tenant_id"] == env.tenant_id
    assert set(body) == {"tenant_id", "event_key", "instance_id", "requested_by"}  # ids, not payloads
    record = env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS).get_entity("event", body["event_key"])
    assert record["state"] == "started"
    assert "octo-repo" not in json.dumps(dict(record), default=str)  # the stored event is sealed


def test_redeliveries_never_start_a_second_gate(env, durable):
    deliver(env, "deployment_protection_rule", DPR, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    deliver(env, "deployment_protection_rule", DPR, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")  # manual
    deliver(env, "deployment_protection_rule", DPR)  # automatic retry: a new delivery id
    run_dispatcher(env, durable)
    assert len(started(durable)) == 1


def test_another_environment_is_another_gate(env, durable):
    deliver(env, "deployment_protection_rule", DPR)
    staging = dict(DPR, environment="staging", deployment=dict(DPR["deployment"], environment="staging"))
    deliver(env, "deployment_protection_rule", staging)
    run_dispatcher(env, durable)
    assert len({path for path, _ in started(durable)}) == 2


def test_status_events_are_recorded_once(env, durable):
    payload = json.loads((SHARED_FIXTURES / "github/workflow_run.completed.payload.json").read_text())
    deliver(env, "workflow_run", payload)
    deliver(env, "workflow_run", payload)
    messages = env.drain()
    gateway = gateway_for(durable)
    dispatcher = env.services.dispatcher(gateway)
    outcomes = [dispatcher.dispatch(decode_message(env.services.sealer, m).event, "e") for m in messages]
    assert [o.disposition for o in outcomes] == [Disposition.RECORDED, Disposition.DUPLICATE]
    assert started(durable) == []


def test_a_failed_start_is_retried_not_mistaken_for_a_duplicate(env, durable):
    deliver(env, "deployment_protection_rule", DPR)
    [text] = env.drain()
    queued = decode_message(env.services.sealer, text)
    gateway = gateway_for(durable)
    dispatcher = env.services.dispatcher(gateway)
    durable.fail_next(1, 500, path_contains="/orchestrators/", body={"Message": "storage unavailable"})
    with pytest.raises(Exception, match="storage unavailable"):
        dispatcher.dispatch(queued.event, queued.event_id)  # the host would retry the message
    result = dispatcher.dispatch(queued.event, queued.event_id)
    assert result.disposition is Disposition.STARTED
    assert durable.instances[queued.event.instance_id]["input"] == gate_input(queued.event)
    again = dispatcher.dispatch(queued.event, queued.event_id)
    assert again.disposition is Disposition.DUPLICATE


def test_an_existing_instance_is_not_replaced(env, durable):
    """start_new replaces a finished instance (and is refused for a running one), so the claimer checks first."""
    deliver(env, "deployment_protection_rule", DPR)
    [text] = env.drain()
    queued = decode_message(env.services.sealer, text)
    durable.instances[queued.event.instance_id] = {
        "name": "deployment_gate",
        "instanceId": queued.event.instance_id,
        "runtimeStatus": "Running",
    }
    gateway = gateway_for(durable)
    assert gateway.exists(queued.event.instance_id)
    assert env.services.dispatcher(gateway).dispatch(queued.event, "e").disposition is Disposition.DUPLICATE
    assert started(durable) == []


def test_undecodable_messages_are_dead_lettered(env, durable):
    trigger(b'{"v": 1, "tenant": "abc"}', durable)
    from gatekeeper.ingest.deadletter import DeadLetters

    assert any("undecodable" in d.reason for d in DeadLetters(env.storage).list("pipeline-events"))


def test_a_rerun_job_is_a_new_gate_so_it_is_answered(env, durable):
    """GitHub keeps the run id on a re-run but creates a new deployment; that request must be gated too."""
    deliver(env, "deployment_protection_rule", DPR)
    rerun = dict(DPR, deployment=dict(DPR["deployment"], id=DPR["deployment"]["id"] + 1))
    deliver(env, "deployment_protection_rule", rerun)
    run_dispatcher(env, durable)
    assert len({path for path, _ in started(durable)}) == 2


# ----- exactly one gate per business key, under concurrency -------------------------------------------


class WorkerDied(BaseException):
    """A worker process killed mid-dispatch: nothing after this point of the dispatcher runs."""


class DyingGateway(DurableClientGateway):
    """The real gateway, in a worker that dies during `start`: before the call reaches the Durable API, or
    right after it returned (the instance was created, but the row was never marked)."""

    def __init__(self, durable, *, after_start: bool):
        super().__init__(df.DurableOrchestrationClient(durable.client_binding), worker_loop())
        self._after_start = after_start

    def start(self, orchestrator: str, instance_id: str, payload: dict) -> None:
        if self._after_start:
            super().start(orchestrator, instance_id, payload)
        raise WorkerDied


def queued_gate(env, delivery: str | None = None):
    deliver(env, "deployment_protection_rule", DPR, delivery=delivery)
    [text] = env.drain()
    return decode_message(env.services.sealer, text)


def event_row(env, queued) -> dict:
    return dict(env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS).get_entity("event", queued.event.key_hash))


def test_twenty_concurrent_deliveries_start_exactly_one_gate(env, durable):
    """Twenty deliveries of one event reach twenty workers at once, and the Durable API is slow to create
    the instance (so "does it exist?" says no to everyone): exactly one worker calls start."""
    for _ in range(20):
        deliver(env, "deployment_protection_rule", DPR)
    messages = env.drain()
    assert len(messages) == 20
    durable.delay("/orchestrators/", 0.5)
    barrier = threading.Barrier(20, timeout=30)

    def worker(text: str) -> None:
        barrier.wait()
        trigger(text.encode(), durable)

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(worker, text) for text in messages]
        failures = [future.exception(timeout=120) for future in futures]
    assert len(started(durable)) == 1
    assert failures == [None] * 20  # no worker failed, so no message goes back to the queue
    [(path, body)] = started(durable)
    assert path.endswith("/" + body["instance_id"])
    assert durable.instances[body["instance_id"]]["input"] == body
    row = env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS).get_entity("event", body["event_key"])
    assert row["state"] == "started"


def test_twenty_concurrent_dispatches_of_a_status_event_record_it_once(env, durable):
    payload = json.loads((SHARED_FIXTURES / "github/workflow_run.completed.payload.json").read_text())
    for _ in range(20):
        deliver(env, "workflow_run", payload)
    events = [decode_message(env.services.sealer, m) for m in env.drain()]
    dispatcher = env.services.dispatcher(gateway_for(durable))
    barrier = threading.Barrier(20, timeout=30)

    def worker(queued) -> Disposition:
        barrier.wait()
        return dispatcher.dispatch(queued.event, queued.event_id).disposition

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(worker, events, timeout=120))
    assert sorted(outcomes) == sorted([Disposition.RECORDED] + [Disposition.DUPLICATE] * 19)
    assert started(durable) == []


def test_a_dead_claimers_row_is_reclaimed_after_the_lease_and_started_once(env, durable):
    queued = queued_gate(env)
    with pytest.raises(WorkerDied):
        env.services.dispatcher(DyingGateway(durable, after_start=False)).dispatch(queued.event, queued.event_id)
    row = event_row(env, queued)
    assert row["state"] == "starting" and started(durable) == []
    # another delivery while the dead worker's lease still runs: it is not taken over yet
    again = queued_gate(env)
    assert env.services.dispatcher(gateway_for(durable)).dispatch(again.event, again.event_id).disposition is (
        Disposition.DUPLICATE
    )
    assert started(durable) == []
    # the dead worker's own message, delivered again after the lease: reclaimed and started, once
    later = EventDispatcher(
        env.storage, env.services.sealer, gateway_for(durable), clock=lambda: row["lease_until"] + timedelta(seconds=1)
    )
    assert later.dispatch(queued.event, queued.event_id).disposition is Disposition.STARTED
    assert later.dispatch(again.event, again.event_id).disposition is Disposition.DUPLICATE
    [(_, body)] = started(durable)
    assert body == gate_input(queued.event)
    assert event_row(env, queued)["state"] == "started"


def test_a_reclaimer_does_not_start_what_the_dead_claimer_already_started(env, durable):
    queued = queued_gate(env)
    with pytest.raises(WorkerDied):
        env.services.dispatcher(DyingGateway(durable, after_start=True)).dispatch(queued.event, queued.event_id)
    row = event_row(env, queued)
    assert row["state"] == "starting" and len(started(durable)) == 1
    later = EventDispatcher(
        env.storage, env.services.sealer, gateway_for(durable), clock=lambda: row["lease_until"] + timedelta(seconds=1)
    )
    assert later.dispatch(queued.event, queued.event_id).disposition is Disposition.DUPLICATE
    assert len(started(durable)) == 1  # it asked first, found the instance, and did not replace it
    assert event_row(env, queued)["state"] == "started"


def test_the_same_message_again_while_its_own_claim_runs_is_retried_not_dropped(env, durable):
    """A copy of the message whose earlier attempt still holds the claim must not be consumed as a
    duplicate: if that attempt died, this message is the only one left to finish the job."""
    queued = queued_gate(env)
    with pytest.raises(WorkerDied):
        env.services.dispatcher(DyingGateway(durable, after_start=False)).dispatch(queued.event, queued.event_id)
    with pytest.raises(ClaimHeld):
        env.services.dispatcher(gateway_for(durable)).dispatch(queued.event, queued.event_id)
    assert started(durable) == []


def test_two_tenants_with_the_same_business_key_each_start_their_own_gate(
    env, durable, storage_connection_string, tmp_path
):
    queued = queued_gate(env)
    other = make_env(storage_connection_string, tmp_path / "other-keys")
    theirs = queued.event.model_copy(update={"tenant_id": other.tenant_id})
    assert theirs.business_key == queued.event.business_key
    assert theirs.instance_id != queued.event.instance_id
    mine = env.services.dispatcher(gateway_for(durable)).dispatch(queued.event, queued.event_id)
    their = other.services.dispatcher(gateway_for(durable)).dispatch(theirs, "e-other")
    assert (mine.disposition, their.disposition) == (Disposition.STARTED, Disposition.STARTED)
    assert {body["tenant_id"]: body["instance_id"] for _, body in started(durable)} == {
        env.tenant_id: queued.event.instance_id,
        other.tenant_id: theirs.instance_id,
    }
