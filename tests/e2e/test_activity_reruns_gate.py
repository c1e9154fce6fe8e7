"""The gate's activities run again with the same input, as the Durable host does (at least once): after a run
that completed (the worker died before the completion reached the history) and after a run that died half-way
(its step row has no result). Each test runs the registered activity through the local runner's served
functions, against Azurite, the real audit log, the outbox and the local webhook receiver, and counts effects.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from devstack.history import EventType
from gatekeeper.contracts.gate import chain_instance_id
from gatekeeper.events.model import ActionKind
from gatekeeper.gates.once import RESULT_PROPERTY, STEP_PARTITION_PREFIX, step_key
from gatekeeper.store.tables import TablePurpose
from tests.e2e.test_gate_flows import ANNA, Env, env, shared  # noqa: F401  (the gate rig's fixtures)

pytestmark = pytest.mark.azurite


def scheduled(env: Env, instance_id: str, name: str) -> tuple[dict[str, Any], Any]:
    """The input the orchestration scheduled `name` with, and the result its history holds."""
    history = env.gates.runner.history(instance_id)
    (event,) = [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == name]
    (done,) = [
        e for e in history if e["EventType"] == EventType.TASK_COMPLETED and e["TaskScheduledId"] == event["EventId"]
    ]
    return json.loads(event["Input"]), json.loads(done["Result"])


def run_again(env: Env, name: str, payload: dict[str, Any]) -> Any:
    """The registered activity, served the rig's services, run once more with the same input."""
    return env.gates.runner.activities[name](json.loads(json.dumps(payload)))


def entries(env: Env, instance_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.kind, r.data) for r in env.audit.records() if r.instance_id == instance_id]


def forget_result(env: Env, name: str, instance_id: str, payload: dict[str, Any]) -> None:
    """What a worker that died after the step's effects and before storing its result leaves: the step row
    without a result (as written before the step ran)."""
    table = env.gates.services.storage.tenant_table(env.tenant_id, TablePurpose.GATES)
    partition, row = STEP_PARTITION_PREFIX + instance_id, step_key(name, payload)
    stored = table.get_entity(partition, row)
    kept = {k: v for k, v in stored.items() if not k.startswith(RESULT_PROPERTY)}
    table.update_entity(kept, mode=UpdateMode.REPLACE)


def test_a_completed_outcome_step_run_again_audits_alerts_and_publishes_nothing_twice(env: Env):
    env.receiver.fail_next(99, status=502)
    gate = env.gates.submit(env.event("dev"))
    env.gates.runner.run_until_complete(gate, horizon=timedelta(hours=1))
    payload, result = scheduled(env, gate, "gate_record_outcome")
    before, alerts = entries(env, gate), env.notifications("alert")
    assert [k for k, _ in before].count("decision") == 2 and len(alerts) == 1  # evaluation + final; one alert

    assert run_again(env, "gate_record_outcome", payload) == result

    assert entries(env, gate) == before  # no second final decision, callback or notification entry
    assert env.notifications("alert") == alerts  # nobody alerted twice


def test_an_outcome_step_that_died_after_its_entries_finds_them_instead_of_appending_again(env: Env):
    env.receiver.fail_next(99, status=502)
    gate = env.gates.submit(env.event("dev"))
    env.gates.runner.run_until_complete(gate, horizon=timedelta(hours=1))
    payload, result = scheduled(env, gate, "gate_record_outcome")
    before = entries(env, gate)
    forget_result(env, "gate_record_outcome", gate, payload)

    assert run_again(env, "gate_record_outcome", payload) == result

    assert entries(env, gate) == before  # the entries the dead run appended are found, not appended again
    assert run_again(env, "gate_record_outcome", payload) == result  # the redo stored its result
    assert entries(env, gate) == before


def test_a_completed_callback_step_run_again_never_calls_the_pipeline_again(env: Env):
    gate = env.gates.submit(env.event("dev"))
    payload, result = scheduled(env, gate, "gate_callback")
    assert result["ok"] is True and [c["state"] for c in env.callbacks()] == ["approved"]
    env.receiver.fail_next(99, status=502)  # a second call would now fail and contradict the first

    assert run_again(env, "gate_callback", payload) == result

    assert [c["state"] for c in env.callbacks()] == ["approved"]
    assert [d["ok"] for k, d in entries(env, gate) if k == "callback"] == [True]


def test_a_completed_chain_audit_step_run_again_appends_one_entry(env: Env):
    gate = env.gates.submit(env.event("prod-eu"))
    env.decide(gate, ANNA)
    chain = chain_instance_id(gate)
    history = env.gates.runner.history(chain)
    (event,) = [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == "gate_audit"]
    payload = json.loads(event["Input"])
    before = entries(env, gate)

    run_again(env, "gate_audit", payload)

    assert entries(env, gate) == before


def test_a_completed_evaluation_run_again_audits_the_decision_once(env: Env):
    gate = env.gates.submit(env.event("staging"))
    payload, result = scheduled(env, gate, "gate_evaluate")
    before = entries(env, gate)

    assert run_again(env, "gate_evaluate", payload) == result

    assert entries(env, gate) == before


def test_the_same_step_at_another_time_is_another_step_and_is_audited(env: Env):
    gate = env.gates.submit(env.event("prod-eu"))
    env.decide(gate, ANNA)
    history = env.gates.runner.history(chain_instance_id(gate))
    (event,) = [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == "gate_audit"]
    payload = json.loads(event["Input"])
    later = payload | {"at": "2099-01-01T00:00:00Z"}
    before = entries(env, gate)

    run_again(env, "gate_audit", later)

    assert entries(env, gate) == [*before, (payload["kind"], payload["data"])]


def test_a_completed_approval_request_run_again_asks_the_approvers_and_the_pipeline_once(env: Env):
    gate = env.gates.submit(env.event("production"))
    payload, result = scheduled(env, chain_instance_id(gate), "gate_request_approval")
    before, cards, notes = entries(env, gate), env.notifications("approval_request"), env.progress()
    assert [k for k, _ in before].count("approval_requested") == 1 and len(cards) == 1 and len(notes) == 1

    assert run_again(env, "gate_request_approval", payload) == result

    assert env.notifications("approval_request") == cards  # no second card or mail to the approvers
    assert env.progress() == notes  # no second progress note on the waiting pipeline
    assert entries(env, gate) == before  # one `approval_requested` entry, one `notification` entry


def test_an_approval_request_that_died_after_its_entries_finds_them_instead_of_appending_again(env: Env):
    gate = env.gates.submit(env.event("production"))
    payload, result = scheduled(env, chain_instance_id(gate), "gate_request_approval")
    before = entries(env, gate)
    forget_result(env, "gate_request_approval", gate, payload)  # its step row is keyed by the gate

    assert run_again(env, "gate_request_approval", payload) == result

    assert entries(env, gate) == before
    assert run_again(env, "gate_request_approval", payload) == result  # the redo stored its result
    assert entries(env, gate) == before


def test_a_completed_human_task_run_again_tells_the_operators_once(env: Env):
    gate = env.gates.submit(env.event("production", ActionKind.SECRET_ACCESS))
    payload, result = scheduled(env, gate, "gate_open_human_task")
    before, tasks = entries(env, gate), env.notifications("human_task")
    assert [k for k, _ in before].count("human_task_opened") == 1 and len(tasks) == 1

    assert run_again(env, "gate_open_human_task", payload) == result

    assert env.notifications("human_task") == tasks  # nobody is asked twice to do the change by hand
    assert entries(env, gate) == before  # one `human_task_opened` entry, one `notification` entry


def test_a_human_task_that_died_after_its_entries_finds_them_instead_of_appending_again(env: Env):
    gate = env.gates.submit(env.event("production", ActionKind.SECRET_ACCESS))
    payload, result = scheduled(env, gate, "gate_open_human_task")
    before = entries(env, gate)
    forget_result(env, "gate_open_human_task", gate, payload)

    assert run_again(env, "gate_open_human_task", payload) == result

    assert entries(env, gate) == before
    assert run_again(env, "gate_open_human_task", payload) == result
    assert entries(env, gate) == before


def test_a_completed_notice_run_again_notifies_once(env: Env):
    gate = env.gates.submit(env.event("staging"))
    payload, result = scheduled(env, gate, "gate_notify")
    before, infos = entries(env, gate), env.notifications("info")
    assert [k for k, _ in before].count("notification") == 1 and len(infos) == 1

    assert run_again(env, "gate_notify", payload) == result

    assert env.notifications("info") == infos  # the operators hear of the executed change once
    assert entries(env, gate) == before


def test_a_notice_that_died_after_its_entry_finds_it_instead_of_appending_again(env: Env):
    gate = env.gates.submit(env.event("staging"))
    payload, result = scheduled(env, gate, "gate_notify")
    before = entries(env, gate)
    forget_result(env, "gate_notify", gate, payload)

    again = run_again(env, "gate_notify", payload)  # the redo sends again: the dead run's send is not known

    assert again["ok"] is result["ok"] is True
    assert entries(env, gate) == before  # one `notification` entry: the dead run's, found
    assert run_again(env, "gate_notify", payload) == again  # the redo stored its result
    assert entries(env, gate) == before
