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
