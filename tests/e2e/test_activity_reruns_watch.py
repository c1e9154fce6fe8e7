"""The watch's activities run again with the same input, as the Durable host does (at least once): a rollback
dispatched, a round probed, a watch closed, each run once more after it completed. Through the registered
activities served the rig's services: Azurite, the real audit log, the local GitHub server and health endpoint.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from devstack.history import EventType
from gatekeeper.gates.once import RESULT_PROPERTY, STEP_PARTITION_PREFIX, step_key
from gatekeeper.store.tables import TablePurpose
from tests.e2e.test_rmm_rollback_flows import DEVICE, rmm  # noqa: F401  (the local NinjaOne around the rig)
from tests.e2e.test_rollback_flows import Env, app_key, env, shared  # noqa: F401  (the watch rig's fixtures)

pytestmark = pytest.mark.azurite


def scheduled(env: Env, instance_id: str, name: str) -> list[tuple[dict[str, Any], Any]]:
    """Each input the orchestration scheduled `name` with, and the result its history holds, in order."""
    history = env.gates.runner.history(instance_id)
    results = {e["TaskScheduledId"]: e["Result"] for e in history if e["EventType"] == EventType.TASK_COMPLETED}
    return [
        (json.loads(e["Input"]), json.loads(results[e["EventId"]]))
        for e in history
        if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == name
    ]


def run_again(env: Env, name: str, payload: dict[str, Any]) -> Any:
    return env.gates.runner.activities[name](json.loads(json.dumps(payload)))


def entries(env: Env, instance_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.kind, r.data) for r in env.audit.records() if r.instance_id == instance_id]


def test_a_completed_rollback_dispatch_run_again_starts_no_second_rollback(env: Env):
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back" and len(env.github.dispatches) == 1
    ((payload, result),) = scheduled(env, bad, "watch_dispatch_rollback")
    before = entries(env, bad)

    assert run_again(env, "watch_dispatch_rollback", payload) == result

    assert len(env.github.dispatches) == 1  # one rollback run, not two
    assert entries(env, bad) == before  # one `rollback dispatched` entry


def test_a_dispatch_that_died_after_recording_its_run_is_not_dispatched_again(env: Env):
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back" and len(env.github.dispatches) == 1
    ((payload, result),) = scheduled(env, bad, "watch_dispatch_rollback")
    before = entries(env, bad)
    # What a worker that died after dispatching, recording and auditing, before storing the step's result, leaves.
    table = env.gates.services.storage.tenant_table(env.tenant_id, TablePurpose.GATES)
    stored = table.get_entity(STEP_PARTITION_PREFIX + bad, step_key("watch_dispatch_rollback", payload))
    table.update_entity({k: v for k, v in stored.items() if not k.startswith(RESULT_PROPERTY)}, mode=UpdateMode.REPLACE)

    again = run_again(env, "watch_dispatch_rollback", payload)

    assert again["ok"] is True and again["detail"] == result["detail"]  # (the run id: as followed since)
    assert len(env.github.dispatches) == 1  # the recorded run is the rollback; none started a second time
    assert entries(env, bad) == before  # its `rollback dispatched` entry found, not appended again


def test_a_completed_probe_round_run_again_counts_the_round_once(env: Env):
    _, bad, _ = env.good_then_bad()
    env.finish(bad)
    rounds = scheduled(env, bad, "watch_round")
    payload, result = rounds[-1]
    probes, checks = env.health.probes, env.entries(bad, "health_check")
    rounds_stored = env.gates.services.watches(env.tenant_id).load(bad).rounds

    assert run_again(env, "watch_round", payload) == result

    assert env.health.probes == probes and env.entries(bad, "health_check") == checks
    assert env.gates.services.watches(env.tenant_id).load(bad).rounds == rounds_stored


def test_a_completed_close_run_again_tells_people_once(env: Env):
    _, bad, _ = env.good_then_bad()
    env.finish(bad)
    ((payload, result),) = scheduled(env, bad, "watch_close")
    notices, before = env.notices(bad), entries(env, bad)

    assert run_again(env, "watch_close", payload) == result

    assert env.notices(bad) == notices and entries(env, bad) == before


def forget_result(env: Env, name: str, instance_id: str, payload: dict[str, Any]) -> None:
    """What a worker that died after the step's effects and before storing its result leaves: the step row
    without a result."""
    table = env.gates.services.storage.tenant_table(env.tenant_id, TablePurpose.GATES)
    stored = table.get_entity(STEP_PARTITION_PREFIX + instance_id, step_key(name, payload))
    table.update_entity({k: v for k, v in stored.items() if not k.startswith(RESULT_PROPERTY)}, mode=UpdateMode.REPLACE)


def test_a_completed_watch_start_run_again_records_the_deployment_once(env: Env):
    watch = env.deploy(env.deployment(ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(watch)["outcome"] == "healthy"
    ((payload, result),) = scheduled(env, watch, "watch_start")
    before = entries(env, watch)
    assert [k for k, _ in before].count("deployment_finished") == 1

    assert run_again(env, "watch_start", payload) == result

    assert entries(env, watch) == before  # one `deployment_finished` entry (lead time, change count)


def test_a_watch_start_that_died_after_its_entry_finds_it_instead_of_appending_again(env: Env):
    watch = env.deploy(env.deployment(ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(watch)["outcome"] == "healthy"
    ((payload, result),) = scheduled(env, watch, "watch_start")
    before = entries(env, watch)
    forget_result(env, "watch_start", watch, payload)

    assert run_again(env, "watch_start", payload) == result

    assert entries(env, watch) == before
    assert run_again(env, "watch_start", payload) == result  # the redo stored its result
    assert entries(env, watch) == before


def test_a_completed_rollback_plan_run_again_takes_no_second_lease_and_decides_once(env: Env):
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back"
    ((payload, result),) = scheduled(env, bad, "watch_plan_rollback")
    deployment = env.gates.services.watches(env.tenant_id).load(bad).deployment
    store = env.gates.services.watches(env.tenant_id)
    at = env.gates.clock.now()
    assert store.lease_holder(deployment.repository, deployment.environment, at) is None  # released at close
    before = entries(env, bad)
    assert [d.get("step") for k, d in before if k == "rollback"].count("decided") == 1

    assert run_again(env, "watch_plan_rollback", payload) == result

    assert store.lease_holder(deployment.repository, deployment.environment, at) is None  # not taken again
    assert entries(env, bad) == before  # one `rollback decided` entry
    assert env.gates.services.watches(env.tenant_id).load(bad).rollback.conclusion == "success"  # run kept


def test_a_rollback_plan_that_died_after_its_entry_finds_it_instead_of_appending_again(env: Env):
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back"
    ((payload, _),) = scheduled(env, bad, "watch_plan_rollback")
    before = entries(env, bad)
    forget_result(env, "watch_plan_rollback", bad, payload)

    again = run_again(env, "watch_plan_rollback", payload)

    assert again["level"] in ("L0", "L1") and again["leased"] is True  # the redo holds the lease, as the dead run did
    assert entries(env, bad) == before  # its `rollback decided` entry found, not appended again


def test_a_completed_rollback_follow_run_again_records_the_conclusion_once(env: Env):
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back"
    payload, result = scheduled(env, bad, "watch_follow_rollback")[-1]
    assert result["done"] is True and result["conclusion"] == "success"
    before, asked = entries(env, bad), len(env.github.requests)
    assert [d.get("step") for k, d in before if k == "rollback"].count("finished") == 1

    assert run_again(env, "watch_follow_rollback", payload) == result

    assert len(env.github.requests) == asked  # the run's conclusion is the stored one: GitHub not asked again
    assert entries(env, bad) == before  # one `rollback finished` entry


def test_a_completed_rmm_step_run_again_calls_the_rmm_once(rmm: tuple[Env, Any]):
    env, ninja = rmm
    watch = env.deploy(env.deployment(ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(watch)["outcome"] == "healthy" and ninja.maintenance == {}
    steps = {p["action"]: (p, r) for p, r in scheduled(env, watch, "watch_rmm")}
    payload, result = steps["maintenance_on"]
    assert result["ok"] is True
    calls, before = len(ninja.requests_to(f"/device/{DEVICE}/maintenance")), entries(env, watch)
    assert calls == 2  # on for the window, off at its end

    assert run_again(env, "watch_rmm", payload) == result

    assert ninja.maintenance == {}  # the device is not put back into maintenance after the watch ended
    assert len(ninja.requests_to(f"/device/{DEVICE}/maintenance")) == calls  # one maintenance call per action
    assert entries(env, watch) == before  # one outbound `connector_event` entry per action
