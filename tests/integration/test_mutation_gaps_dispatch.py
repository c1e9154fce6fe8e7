"""Two tenants with the same business key through the dispatcher (issue 21), on Azurite and the Durable API.

Each tenant's event must get its own dedupe record and its own gate: if the tenant fell out of the key or the
instance id, the second tenant's gate request would be called a duplicate of the first (or start the first
tenant's orchestration), and one customer's pipeline would be answered by another's approvals.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import azure.durable_functions as df
import pytest

from functions.durable_gateway import DurableClientGateway
from gatekeeper.ingest.dispatcher import Disposition
from gatekeeper.ingest.queue import decode_message
from gatekeeper.store.tables import TablePurpose
from tests.conftest import ROOT
from tests.support.gatekeeper_env import github_request, http_function
from tests.support.worker_loop import worker_loop

DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())


@pytest.fixture
def env(served_env):
    return served_env


def _queued_event(env):
    response = http_function("github_webhook")(github_request("deployment_protection_rule", DPR))
    assert response.status_code == 202, response.get_body()
    [text] = env.drain()
    return decode_message(env.services.sealer, text)


def test_two_tenants_with_one_business_key_get_two_records_and_two_gates(env, durable):
    queued = _queued_event(env)
    mine = queued.event
    theirs = mine.model_copy(update={"tenant_id": "t" + uuid.uuid4().hex[:12]})
    assert mine.business_key == theirs.business_key

    gateway = DurableClientGateway(df.DurableOrchestrationClient(durable.client_binding), worker_loop())
    dispatcher = env.services.dispatcher(gateway)
    first = dispatcher.dispatch(mine, queued.event_id)
    second = dispatcher.dispatch(theirs, "other-event-id")

    assert (first.disposition, second.disposition) == (Disposition.STARTED, Disposition.STARTED)
    assert first.instance_id != second.instance_id
    inputs = {
        durable.instances[i]["input"]["tenant_id"]: durable.instances[i]["input"]
        for i in (first.instance_id, second.instance_id)
    }
    assert set(inputs) == {mine.tenant_id, theirs.tenant_id}
    assert inputs[mine.tenant_id]["event_key"] != inputs[theirs.tenant_id]["event_key"]

    for event in (mine, theirs):
        table = env.storage.tenant_table(event.tenant_id, TablePurpose.EVENTS)
        record = table.get_entity("event", event.key_hash)
        assert record["state"] == "started"
        # the sealed copy opens only in its own tenant's table
        stored = env.services.sealer.open_json(
            event.tenant_id, table.table_name, "event", event.key_hash, record["sealed_event"]
        )
        assert stored["tenant_id"] == event.tenant_id

    mine_record = env.storage.tenant_table(mine.tenant_id, TablePurpose.EVENTS).get_entity("event", mine.key_hash)
    assert mine.delivery_id and mine_record["delivery_id"] == mine.delivery_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.disposition = Disposition.DUPLICATE  # type: ignore[misc]

    # each tenant's redelivery is still a duplicate of its own gate only
    assert dispatcher.dispatch(theirs, "again").disposition is Disposition.DUPLICATE
    assert dispatcher.dispatch(mine, "again").disposition is Disposition.DUPLICATE
    assert len(durable.posts("/orchestrators/")) == 2


def test_a_started_key_never_starts_again_even_when_its_orchestration_is_gone(env, durable):
    """Once a business key has started a gate, a redelivery is a duplicate, even after the instance was purged."""
    queued = _queued_event(env)
    gateway = DurableClientGateway(df.DurableOrchestrationClient(durable.client_binding), worker_loop())
    dispatcher = env.services.dispatcher(gateway)
    assert dispatcher.dispatch(queued.event, queued.event_id).disposition is Disposition.STARTED
    durable.instances.clear()  # purged (history retention), or a hub that lost it
    assert dispatcher.dispatch(queued.event, "redelivery").disposition is Disposition.DUPLICATE
    assert len(durable.posts("/orchestrators/")) == 1
