"""`post_deploy_watch` replayed through the real azure-functions-durable SDK (the local runner builds host-
shaped histories: timers, task_any with wake events, sub-orchestrations), with scripted activities so the
flow's own logic is what is tested: the schedule, the branches, determinism, and the history cost per probe."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import orchestrators
from devstack.history import EventType
from devstack.runner import LocalOrchestrationRunner, ManualClock, registered_functions

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
WATCH = "watch-" + "a" * 40
INPUT = {"tenant_id": "tenant1", "event_key": "ab" * 32, "instance_id": WATCH, "gate_id": None}


def plan(**over: Any) -> dict[str, Any]:
    return {
        "watched": True,
        "reason": "watched",
        "failed": False,
        "is_rollback": False,
        "initial_delay_seconds": 60,
        "interval_seconds": 60,
        "rounds": 3,
        "probes": 1,
    } | over


def verdict(action: str, wakes: int = 0, result: str = "pass") -> dict[str, Any]:
    return {"result": result, "verdict": "x", "action": action, "reason": f"because {action}", "wakes": wakes}


class Script:
    """Scripted activities; every call is logged as (name, payload)."""

    def __init__(self, rounds: list[dict[str, Any]], **answers: Any):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rounds = list(rounds)
        self.answers = {
            "watch_start": plan(),
            "watch_plan_rollback": {
                "level": "L1",
                "reason": "r",
                "title": "Roll back",
                "leased": True,
                "follow_seconds": 300,
            },
            "watch_dispatch_rollback": {"ok": True, "detail": "dispatched"},
            "watch_follow_rollback": [{"done": False}, {"done": True, "conclusion": "success", "detail": "run 1"}],
            "watch_close": {"state": "closed"},
        } | answers

    def activity(self, name: str) -> Callable[[Any], Any]:
        def run(payload: Any) -> Any:
            self.calls.append((name, payload))
            if name == "watch_round":
                return self.rounds.pop(0)
            answer = self.answers[name]
            return answer.pop(0) if isinstance(answer, list) else answer

        return run

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def closed(self) -> str:
        return next(p["outcome"] for n, p in self.calls if n == "watch_close")


def runner_for(script: Script) -> LocalOrchestrationRunner:
    flows, activities = registered_functions(orchestrators.bp)
    fakes = {name: script.activity(name) for name in activities if name.startswith("watch_")}
    return LocalOrchestrationRunner(flows, {**activities, **fakes}, ManualClock(START))


def run(script: Script) -> tuple[LocalOrchestrationRunner, Any]:
    runner = runner_for(script)
    runner.start("post_deploy_watch", WATCH, INPUT)
    return runner, runner.run_until_complete(WATCH)


def fire_times(runner: LocalOrchestrationRunner) -> list[datetime]:
    return [
        datetime.fromisoformat(e["FireAt"]) for e in runner.history(WATCH) if e["EventType"] == EventType.TIMER_CREATED
    ]


def test_a_clean_window_probes_on_the_schedule_and_closes_quietly():
    script = Script([verdict("wait"), verdict("wait"), verdict("wait"), verdict("close")])
    runner, status = run(script)
    assert status.runtime_status == "Completed" and status.output["outcome"] == "healthy"
    assert script.names() == ["watch_start"] + ["watch_round"] * 4 + ["watch_close"]
    assert script.closed() == "healthy"
    minute = timedelta(minutes=1)
    assert fire_times(runner) == [START + minute, START + 2 * minute, START + 3 * minute, START + 4 * minute]
    rounds = [p for n, p in script.calls if n == "watch_round"]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3] and all(r["probe"] for r in rounds)
    assert [datetime.fromisoformat(r["at"]) for r in rounds] == [START + k * minute for k in (1, 2, 3, 4)]
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]  # deterministic


def test_an_unwatched_environment_ends_after_recording_the_deployment():
    script = Script([], watch_start=plan(watched=False, reason="no watch"))
    _, status = run(script)
    assert status.output == {"outcome": "not_watched", "reason": "no watch"}
    assert script.names() == ["watch_start"]


def test_unhealthy_at_l1_rolls_back_follows_the_run_and_notifies():
    script = Script([verdict("wait"), verdict("rollback", result="fail")])
    runner, status = run(script)
    assert status.output["outcome"] == "rolled_back"
    assert script.names() == [
        "watch_start",
        "watch_round",
        "watch_round",
        "watch_plan_rollback",
        "watch_dispatch_rollback",
        "watch_follow_rollback",
        "watch_follow_rollback",
        "watch_close",
    ]
    assert script.closed() == "rolled_back"
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]


def test_a_failed_deployment_goes_straight_to_the_decision_without_probing():
    script = Script([verdict("rollback", result="none")], watch_start=plan(failed=True))
    _, status = run(script)
    first_round = next(p for n, p in script.calls if n == "watch_round")
    assert first_round["probe"] is False and status.output["outcome"] == "rolled_back"


@pytest.mark.parametrize(
    ("answers", "outcome", "dispatched"),
    [
        ({"watch_dispatch_rollback": {"ok": False, "detail": "github 422"}}, "rollback_failed", False),
        (
            {"watch_follow_rollback": [{"done": True, "conclusion": "failure", "detail": "run 2"}]},
            "rollback_failed",
            True,
        ),
        ({"watch_plan_rollback": {"level": "L3", "reason": "no target", "leased": True}}, "human_task", False),
        ({"watch_plan_rollback": {"level": "L1", "reason": "busy", "leased": False}}, "human_task", False),
    ],
)
def test_rollback_failures_and_l3_go_to_people(answers, outcome, dispatched):
    script = Script([verdict("rollback", result="fail")], **answers)
    _, status = run(script)
    assert status.output["outcome"] == outcome and script.closed() == outcome
    assert ("watch_dispatch_rollback" in script.names()) is (dispatched or "watch_dispatch_rollback" in answers)


def test_a_rollback_run_that_never_finishes_times_out_as_failed():
    script = Script(
        [verdict("rollback", result="fail")],
        watch_follow_rollback=[{"done": False}] * 20,
        watch_plan_rollback={"level": "L1", "reason": "r", "leased": True, "follow_seconds": 120},
    )
    _, status = run(script)
    assert (
        status.output["outcome"] == "rollback_failed" and "did not finish within 2 minutes" in status.output["reason"]
    )
    assert script.names().count("watch_follow_rollback") == 4  # polls every 30 s for 2 minutes


def test_a_wake_event_reassesses_at_once_and_cancels_the_timer():
    script = Script([verdict("wait", wakes=0), verdict("rollback", result="none")])
    runner = runner_for(script)
    runner.start("post_deploy_watch", WATCH, INPUT)
    runner.run_until_idle()
    runner.advance(timedelta(minutes=1))  # initial delay, round 0: wait; now waiting for round 1 or a wake
    assert script.names() == ["watch_start", "watch_round"]
    runner.raise_event(WATCH, "watch-wake-0", {"why": "hold released"})
    runner.run_until_idle()
    woken = [p for n, p in script.calls if n == "watch_round"][-1]
    assert woken["probe"] is False and datetime.fromisoformat(woken["at"]) == START + timedelta(minutes=1)
    assert runner.cancelled_timers(WATCH)
    status = runner.run_until_complete(WATCH)
    assert status.output["outcome"] == "rolled_back"
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]


def test_inconclusive_asks_people_and_a_later_request_rolls_back():
    script = Script([verdict("ask", wakes=2), verdict("rollback", result="none")])
    runner = runner_for(script)
    runner.start("post_deploy_watch", WATCH, INPUT)
    runner.advance(timedelta(minutes=1))
    assert script.names()[-1] == "watch_close" and script.closed() == "asked"
    runner.raise_event(WATCH, "watch-wake-1", None)  # an old number: not the one the watch waits for
    runner.run_until_idle()
    assert script.names().count("watch_round") == 1
    runner.raise_event(WATCH, "watch-wake-2", None)
    status = runner.run_until_complete(WATCH)
    assert status.output["outcome"] == "rolled_back"
    assert [p["outcome"] for n, p in script.calls if n == "watch_close"] == ["asked", "rolled_back"]


def test_an_unanswered_question_ends_the_watch_after_a_day():
    script = Script([verdict("ask")])
    _, status = run(script)
    assert status.output["outcome"] == "asked" and "watch_plan_rollback" not in script.names()


def test_an_l2_rollback_waits_for_the_approval_chain():
    chain = {
        "stages": [
            {
                "name": "cab",
                "approvers": ["00000000-0000-0000-0000-00000000000a"],
                "quorum": 1,
                "timeout": "PT1H",
                "on_timeout": "reject",
            }
        ]
    }
    script = Script(
        [verdict("rollback", result="fail")],
        watch_plan_rollback={
            "level": "L2",
            "reason": "rule",
            "leased": True,
            "chain": chain,
            "gate_id": WATCH + "-rollback",
            "title": "Roll back shop",
        },
    )
    runner = runner_for(script)
    runner.activities["gate_request_approval"] = lambda payload: {"stage": 0, "notified": True}
    runner.activities["gate_audit"] = lambda payload: {"ok": True}
    runner.start("post_deploy_watch", WATCH, INPUT)
    runner.advance(timedelta(minutes=1))
    assert "watch_dispatch_rollback" not in script.names()
    assert runner.status(WATCH + "-rollback:approval").runtime_status == "Running"
    vote = {
        "seq": 0,
        "voter_id": "00000000-0000-0000-0000-00000000000a",
        "decision": "approve",
        "at": (START + timedelta(minutes=2)).isoformat(),
        "stage": 0,
    }
    runner.advance(timedelta(minutes=1))
    runner.raise_event(WATCH + "-rollback:approval", "approval-vote-0", vote)
    status = runner.run_until_complete(WATCH)
    assert status.output["outcome"] == "rolled_back" and "watch_dispatch_rollback" in script.names()


def test_an_l2_rollback_the_chain_rejects_is_not_run():
    chain = {
        "stages": [
            {
                "name": "cab",
                "approvers": ["00000000-0000-0000-0000-00000000000a"],
                "quorum": 1,
                "timeout": "PT1H",
                "on_timeout": "reject",
            }
        ]
    }
    script = Script(
        [verdict("rollback", result="fail")],
        watch_plan_rollback={
            "level": "L2",
            "reason": "rule",
            "leased": True,
            "chain": chain,
            "gate_id": WATCH + "-rollback",
            "title": "Roll back shop",
        },
    )
    runner = runner_for(script)
    runner.activities["gate_request_approval"] = lambda payload: {"stage": 0, "notified": True}
    runner.activities["gate_audit"] = lambda payload: {"ok": True}
    runner.start("post_deploy_watch", WATCH, INPUT)
    status = runner.run_until_complete(WATCH)  # nobody votes: the stage times out and rejects
    assert status.output["outcome"] == "rejected" and "watch_dispatch_rollback" not in script.names()


def _probe_cost(rounds: int) -> tuple[int, float]:
    script = Script([verdict("wait")] * (rounds - 1) + [verdict("close")], watch_start=plan(rounds=rounds))
    runner, status = run(script)
    assert status.output["outcome"] == "healthy"
    started = time.perf_counter()
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]
    return len(runner.history(WATCH)), time.perf_counter() - started


def test_a_waiting_watch_costs_a_bounded_number_of_history_events_per_probe():
    """Per round: one activity (scheduled, completed), one timer (created, fired), one wake wait that stays
    pending, and the episode markers; so the history grows linearly, like a waiting gate's."""
    one, _ = _probe_cost(1)
    hundred, _ = _probe_cost(100)
    per_probe = (hundred - one) / 99
    assert 6 <= per_probe <= 8, per_probe


# --- the tenant's RMM around the watch (issue 15) ---------------------------------------------------------------


def rmm_actions(script: Script) -> list[str]:
    return [p["action"] for n, p in script.calls if n == "watch_rmm"]


def test_maintenance_wraps_a_clean_watch_and_ends_before_the_close():
    script = Script(
        [verdict("wait"), verdict("close")],
        watch_start=plan(maintenance=True, rmm=True),
        watch_rmm={"ok": True},
    )
    runner, status = run(script)
    assert status.output["outcome"] == "healthy"
    assert script.names() == ["watch_start", "watch_rmm", "watch_round", "watch_round", "watch_rmm", "watch_close"]
    assert rmm_actions(script) == ["maintenance_on", "maintenance_off"]  # no rollback: nothing to resolve
    on = next(p for n, p in script.calls if n == "watch_rmm")
    assert datetime.fromisoformat(on["at"]) == START  # before the initial delay
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]


def test_after_a_successful_rollback_the_rmm_alert_is_resolved_then_maintenance_ends():
    script = Script(
        [verdict("wait"), verdict("rollback", result="fail")],
        watch_start=plan(maintenance=True, rmm=True),
        watch_rmm={"ok": True},
    )
    runner, status = run(script)
    assert status.output["outcome"] == "rolled_back"
    names = script.names()
    assert names[-4:] == ["watch_follow_rollback", "watch_rmm", "watch_rmm", "watch_close"]
    assert rmm_actions(script) == ["maintenance_on", "resolve_alerts", "maintenance_off"]
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]


@pytest.mark.parametrize(
    "answers",
    [
        {"watch_dispatch_rollback": {"ok": False, "detail": "github 422"}},
        {"watch_plan_rollback": {"level": "L3", "reason": "no target", "leased": True}},
    ],
)
def test_no_alert_is_resolved_when_the_rollback_did_not_succeed(answers):
    script = Script([verdict("rollback", result="fail")], watch_start=plan(rmm=True), watch_rmm={"ok": True}, **answers)
    _, status = run(script)
    assert status.output["outcome"] in ("rollback_failed", "human_task")
    assert rmm_actions(script) == []


def test_a_failing_rmm_step_is_retried_and_never_blocks_the_watch_or_the_rollback():
    script = Script([verdict("rollback", result="fail")], watch_start=plan(maintenance=True, rmm=True))
    attempts: list[str] = []

    def broken(payload: Any) -> Any:
        attempts.append(payload["action"])
        script.calls.append(("watch_rmm", payload))
        raise RuntimeError("storage is down")

    flows, activities = registered_functions(orchestrators.bp)
    fakes = {name: script.activity(name) for name in activities if name.startswith("watch_")}
    runner = LocalOrchestrationRunner(flows, {**activities, **fakes, "watch_rmm": broken}, ManualClock(START))
    runner.start("post_deploy_watch", WATCH, INPUT)
    status = runner.run_until_complete(WATCH)
    assert status.runtime_status == "Completed" and status.output["outcome"] == "rolled_back"
    assert attempts == ["maintenance_on"] * 3 + ["resolve_alerts"] * 3 + ["maintenance_off"] * 3
    assert script.closed() == "rolled_back"
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]


def test_a_watch_planned_before_the_rmm_existed_replays_without_rmm_calls():
    old_plan = {k: v for k, v in plan().items() if k not in ("maintenance", "rmm")}
    script = Script([verdict("rollback", result="fail")], watch_start=old_plan)
    runner, status = run(script)
    assert status.output["outcome"] == "rolled_back" and "watch_rmm" not in script.names()
    assert runner.replay(WATCH) == runner.episodes(WATCH)[-1]
