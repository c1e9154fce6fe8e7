"""What the dispatcher starts for an event, and under which instance id (issue 21, fifth day: survivors of
`make mutation MODULES=dispatcher`).

The routing decides which flow an event starts: a gate request starts a gate, a *finished* deployment names
its watch, and everything else is only recorded. The watch's instance id is one per deployment (success and
failure of one deployment must not start two watches), built from the tenant, so two tenants never share one,
and the gate it follows is rebuilt from the business key of the gate request that let the deployment through.
Each expectation here is built independently (the documented hash construction), never with the function
under test.
"""

from __future__ import annotations

import hashlib

import pytest

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.ingest.dispatcher import (
    DispatchResult,
    Disposition,
    deployment_key,
    gate_input,
    gate_of,
    instance_for,
    orchestrator_for,
    watch_input,
)

TENANT = "tcontoso0001"


def _status(source: EventSource = EventSource.GENERIC, **fields) -> PipelineEvent:
    base = {"kind": EventKind.DEPLOYMENT_STATUS, "environment": "production", "run_id": "r-17", "status": "success"}
    return PipelineEvent(tenant_id=TENANT, source=source, **{**base, **fields})


def _gate_instance(tenant: str, source: str, run: str, environment: str) -> str:
    key = f"{tenant}|{source}|{run}|{environment}|gate_request|"
    return "gate-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _watch_instance(tenant: str, source: str, run: str, environment: str) -> str:
    return "watch-" + hashlib.sha256(f"{tenant}|{source}|{run}|{environment}".encode()).hexdigest()[:40]


@pytest.mark.parametrize("status", ["success", "failure", "error"])
def test_a_finished_deployment_starts_its_watch(status):
    assert orchestrator_for(_status(status=status)) == "post_deploy_watch"
    assert orchestrator_for(_status(kind=EventKind.STAGE_STATUS, status=status)) == "post_deploy_watch"


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "in_progress"},
        {"status": "queued"},
        {"status": None},
        {"environment": None},
        {"environment": ""},
        {"kind": EventKind.RUN_STATUS},
        {"kind": EventKind.JOB_STATUS},
        {"kind": EventKind.ALERT},
    ],
)
def test_an_unfinished_or_environmentless_status_is_only_recorded(fields):
    event = _status(**fields)
    assert orchestrator_for(event) is None
    assert DispatchResult(Disposition.RECORDED, event).instance_id is None


def test_a_gate_request_starts_a_gate_under_its_own_instance_id():
    gate = PipelineEvent(
        tenant_id=TENANT, source=EventSource.GENERIC, kind=EventKind.GATE_REQUEST, run_id="r-17", environment="prod"
    )
    assert orchestrator_for(gate) == "deployment_gate"
    assert instance_for(gate) == gate.instance_id == _gate_instance(TENANT, "generic", "r-17", "prod")
    assert DispatchResult(Disposition.STARTED, gate).instance_id == gate.instance_id


def test_success_and_failure_of_one_deployment_are_one_watch_and_two_tenants_two():
    success, failure = _status(status="success"), _status(status="failure")
    assert success.key_hash != failure.key_hash  # two events, recorded apart ...
    assert instance_for(success) == instance_for(failure)  # ... one watch
    assert instance_for(success) == _watch_instance(TENANT, "generic", "r-17", "production")
    assert deployment_key(success) == hashlib.sha256(f"{TENANT}|generic|r-17|production".encode()).hexdigest()
    other_tenant = success.model_copy(update={"tenant_id": "tfabrikam002"})
    assert instance_for(other_tenant) != instance_for(success)
    assert instance_for(_status(environment="staging")) != instance_for(success)
    assert instance_for(_status(run_id="r-18")) != instance_for(success)
    assert instance_for(_status(source=EventSource.GITHUB)) != instance_for(success)
    # a deployment named by its subject only (no run id) is still its own watch
    by_subject = _status(run_id=None, subject="deployments/5")
    assert instance_for(by_subject) == _watch_instance(TENANT, "generic", "deployments/5", "production")


def test_the_watch_follows_the_gate_that_let_a_generic_run_through():
    event = _status()
    assert gate_of(event) == _gate_instance(TENANT, "generic", "r-17", "production")
    assert watch_input(event) == {
        "tenant_id": TENANT,
        "event_key": event.key_hash,
        "instance_id": _watch_instance(TENANT, "generic", "r-17", "production"),
        "gate_id": _gate_instance(TENANT, "generic", "r-17", "production"),
    }


def test_the_watch_of_a_github_deployment_follows_the_gate_of_that_deployment():
    """A GitHub protection-rule gate's run id is `<run>/deployments/<id>`; its deployment status names the id in
    `subject`, so the gate is rebuilt from both (a status of the run alone names the run's gate)."""
    deployment = _status(EventSource.GITHUB, run_id="9001", subject="deployments/77")
    assert gate_of(deployment) == _gate_instance(TENANT, "github", "9001/deployments/77", "production")
    plain = _status(EventSource.GITHUB, run_id="9001", subject="other/77")
    assert gate_of(plain) == _gate_instance(TENANT, "github", "9001", "production")


@pytest.mark.parametrize(
    "event",
    [
        _status(EventSource.AZURE_DEVOPS),  # an Azure DevOps check's key cannot be rebuilt from a stage status
        _status(EventSource.CONNECTWISE),
        _status(run_id=None),  # no run: no gate to follow
        _status(run_id=""),
    ],
)
def test_no_gate_is_named_where_its_business_key_cannot_be_rebuilt(event):
    assert gate_of(event) is None
    assert watch_input(event)["gate_id"] is None


def test_a_gate_starts_with_ids_only_and_the_claimed_requester():
    gate = PipelineEvent(
        tenant_id=TENANT,
        source=EventSource.GENERIC,
        kind=EventKind.GATE_REQUEST,
        run_id="r-17",
        actor="dev@contoso.com",
        command="terraform apply",
    )
    assert gate_input(gate) == {
        "tenant_id": TENANT,
        "event_key": gate.key_hash,
        "instance_id": _gate_instance(TENANT, "generic", "r-17", ""),
        "requested_by": "dev@contoso.com",
    }
