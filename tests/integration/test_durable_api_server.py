"""The local Durable HTTP API answers as the Durable Functions extension does (its HttpApiHandler, with the
default `overridableExistingInstanceStates: NonRunningStates`), checked through the real
`DurableOrchestrationClient` where the SDK can send the request, and with plain HTTP where it cannot (the
SDK always sends JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.durable_functions as df
import pytest
import requests

from devstack.durable_api import DurableApiServer
from tests.support.worker_loop import run_on_worker


@pytest.fixture
def durable() -> Iterator[DurableApiServer]:
    with DurableApiServer() as server:
        yield server


def client(durable: DurableApiServer) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(durable.client_binding)


def start(durable: DurableApiServer, instance_id: str, payload: object) -> str:
    return run_on_worker(client(durable).start_new("deployment_gate", instance_id, payload))


@pytest.mark.parametrize("status", ["Pending", "Running", "ContinuedAsNew", "Suspended"])
def test_starting_an_instance_that_is_not_finished_is_refused(durable, status):
    start(durable, "gate-1", {"n": 1})
    durable.instances["gate-1"]["runtimeStatus"] = status
    with pytest.raises(Exception, match=f"An Orchestration instance with the status {status} already exists"):
        start(durable, "gate-1", {"n": 2})
    assert durable.instances["gate-1"]["input"] == {"n": 1}  # not replaced
    assert durable.instances["gate-1"]["runtimeStatus"] == status


@pytest.mark.parametrize("status", ["Completed", "Failed", "Terminated"])
def test_starting_over_a_finished_instance_replaces_it(durable, status):
    start(durable, "gate-1", {"n": 1})
    durable.finish("gate-1", status)
    assert start(durable, "gate-1", {"n": 2}) == "gate-1"
    assert durable.instances["gate-1"]["input"] == {"n": 2}
    assert durable.instances["gate-1"]["runtimeStatus"] == "Pending"


@pytest.mark.parametrize("status", ["Completed", "Failed", "Terminated"])
def test_raising_an_event_on_a_finished_instance_is_gone(durable, status):
    start(durable, "chain-1", None)
    durable.finish("chain-1", status)
    with pytest.raises(Exception, match="is gone"):
        run_on_worker(client(durable).raise_event("chain-1", "approval-vote-0", {"decision": "approve"}))
    assert durable.requests_to("/raiseEvent/")[-1].status == 410
    assert "events" not in durable.instances["chain-1"]


def test_raising_an_event_on_a_running_instance_is_accepted_and_on_an_unknown_one_not_found(durable):
    start(durable, "chain-1", None)
    run_on_worker(client(durable).raise_event("chain-1", "approval-vote-0", {"decision": "approve"}))
    assert durable.instances["chain-1"]["events"] == [("approval-vote-0", json.dumps({"decision": "approve"}))]
    with pytest.raises(Exception, match="No instance with ID chain-2 found"):
        run_on_worker(client(durable).raise_event("chain-2", "approval-vote-0", {}))


@pytest.mark.parametrize(
    ("path", "content_type", "body", "message"),
    [
        ("/durabletask/instances/chain-1/raiseEvent/x", "application/json", b"{not json", "Invalid JSON content"),
        ("/durabletask/instances/chain-1/raiseEvent/x", "text/plain", b"approve", "Only application/json"),
        ("/durabletask/orchestrators/deployment_gate/gate-9", "application/json", b"{not json", "Invalid JSON content"),
    ],
)
def test_a_body_that_is_not_json_is_a_bad_request(durable, path, content_type, body, message):
    start(durable, "chain-1", None)
    response = requests.post(durable.url + path, data=body, headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 400
    assert message in json.dumps(response.json())
    assert "events" not in durable.instances["chain-1"] and "gate-9" not in durable.instances


def test_status_is_202_while_running_and_200_once_completed(durable):
    sdk = client(durable)
    start(durable, "gate-1", {"n": 1})
    assert run_on_worker(sdk.get_status("gate-1")).runtime_status == df.OrchestrationRuntimeStatus.Pending
    assert durable.requests_to("/instances/gate-1", "GET")[-1].status == 202
    durable.finish("gate-1", "Completed", output={"approved": True})
    status = run_on_worker(sdk.get_status("gate-1"))
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed and status.output == {"approved": True}
    assert durable.requests_to("/instances/gate-1", "GET")[-1].status == 200
    run_on_worker(sdk.get_status("gate-unknown"))
    assert durable.requests_to("/instances/gate-unknown", "GET")[-1].status == 404
