"""The local orchestration runner: real SDK replay over host-shaped histories, timers, events, retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import pytest

from devstack.history import EventType, describe
from devstack.runner import (
    InstanceNotFound,
    InstanceNotRunning,
    LocalOrchestrationRunner,
    ManualClock,
    RunnerError,
    flatten,
)

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def kinds(history: list[dict]) -> list[str]:
    return [EventType(e["EventType"]).name for e in history]


def double(x: int) -> int:
    return x * 2


class Flaky:
    """Fails `failures` times, then answers."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")
        return {"ok": x}


def make(orchestrators, activities=None, clock=None) -> LocalOrchestrationRunner:
    all_activities = {"double": double, **(activities or {})}
    return LocalOrchestrationRunner(orchestrators, all_activities, clock or ManualClock(START))


# ----- activities and histories -----------------------------------------------------------------------


def sequence(context):
    a = yield context.call_activity("double", context.get_input()["n"])
    b = yield context.call_activity("double", a)
    return {"a": a, "b": b, "at": context.current_utc_datetime.isoformat()}


def test_activities_run_in_order_and_the_history_has_the_hosts_shape():
    runner = make({"sequence": sequence})
    runner.start("sequence", "i-1", {"n": 5})
    assert runner.status("i-1").runtime_status == "Pending"
    runner.run_until_idle()
    status = runner.status("i-1")
    assert status.runtime_status == "Completed"
    assert status.output == {"a": 10, "b": 20, "at": START.isoformat()}
    history = runner.history("i-1")
    assert kinds(history) == [
        "ORCHESTRATOR_STARTED",
        "EXECUTION_STARTED",
        "TASK_SCHEDULED",
        "ORCHESTRATOR_COMPLETED",
        "ORCHESTRATOR_STARTED",
        "TASK_COMPLETED",
        "TASK_SCHEDULED",
        "ORCHESTRATOR_COMPLETED",
        "ORCHESTRATOR_STARTED",
        "TASK_COMPLETED",
        "EXECUTION_COMPLETED",
        "ORCHESTRATOR_COMPLETED",
    ]
    scheduled = [e for e in history if e["EventType"] == EventType.TASK_SCHEDULED]
    completed = [e for e in history if e["EventType"] == EventType.TASK_COMPLETED]
    assert [e["EventId"] for e in scheduled] == [0, 1]
    assert [e["TaskScheduledId"] for e in completed] == [0, 1]
    assert [e["Result"] for e in completed] == ["10", "20"]
    assert history[-2]["OrchestrationStatus"] == "Completed"


def test_unknown_orchestrator_and_activity_are_reported():
    runner = make({"sequence": sequence}, clock=ManualClock(START))
    with pytest.raises(RunnerError, match="no orchestrator"):
        runner.start("nope")

    def calls_missing(context):
        yield context.call_activity("missing", 1)

    runner = make({"m": calls_missing})
    runner.start("m", "m")
    with pytest.raises(RunnerError, match="unknown activity 'missing'"):
        runner.run_until_idle()


def test_an_orchestrator_exception_fails_the_instance_with_its_message():
    def broken(context):
        yield context.call_activity("double", 1)
        raise ValueError("policy document missing")

    runner = make({"broken": broken})
    runner.start("broken", "b")
    runner.run_until_idle()
    status = runner.status("b")
    assert status.runtime_status == "Failed" and "policy document missing" in status.output


def test_an_activity_exception_is_thrown_into_the_orchestrator():
    def catches(context):
        try:
            yield context.call_activity("flaky", 1)
        except Exception as exc:
            return f"caught: {exc}"

    runner = make({"c": catches}, {"flaky": Flaky(failures=9)})
    runner.start("c", "c")
    runner.run_until_idle()
    assert runner.status("c").output.startswith("caught: ConnectionError: attempt 1 failed")


# ----- timers and external events ---------------------------------------------------------------------


def race(context):
    deadline = context.current_utc_datetime + timedelta(hours=1)
    timer = context.create_timer(deadline)
    event = context.wait_for_external_event("go")
    winner = yield context.task_any([event, timer])
    if winner is event:
        timer.cancel()
        return {"won": "event", "data": event.result, "at": context.current_utc_datetime.isoformat()}
    return {"won": "timer", "at": context.current_utc_datetime.isoformat()}


def test_event_wins_the_race_and_the_timer_is_cancelled():
    runner = make({"race": race})
    runner.start("race", "r")
    runner.run_until_idle()
    assert runner.status("r").waiting_for == ("go",)
    assert list(runner.pending_timers("r").values()) == [START + timedelta(hours=1)]
    runner.advance(timedelta(minutes=10))
    runner.raise_event("r", "go", {"by": "anna"})
    runner.run_until_idle()
    status = runner.status("r")
    assert status.output == {"won": "event", "data": {"by": "anna"}, "at": (START + timedelta(minutes=10)).isoformat()}
    assert runner.cancelled_timers("r") == [0] and runner.pending_timers("r") == {}
    assert runner.episodes("r")[-1]["actions"][0][0]["compoundActions"][1]["isCanceled"] is True


def test_timer_wins_when_the_clock_passes_the_deadline():
    runner = make({"race": race})
    runner.start("race", "r")
    runner.advance(timedelta(minutes=59))
    assert runner.status("r").runtime_status == "Running"
    runner.advance(timedelta(hours=3))
    status = runner.status("r")
    assert status.output == {"won": "timer", "at": (START + timedelta(hours=1)).isoformat()}  # fired on time
    fired = [e for e in runner.history("r") if e["EventType"] == EventType.TIMER_FIRED]
    assert fired[0]["TimerId"] == 0 and fired[0]["FireAt"].startswith("2030-01-01T10:00:00")


def test_event_raised_before_the_orchestrator_waits_is_buffered():
    def late_waiter(context):
        yield context.call_activity("double", 1)
        value = yield context.wait_for_external_event("go")
        return value

    runner = make({"w": late_waiter})
    runner.start("w", "w")
    runner.raise_event("w", "go", 42)  # arrives before the activity's result
    runner.run_until_idle()
    assert runner.status("w").output == 42


def test_the_sdk_keeps_one_early_event_per_name_which_is_why_votes_are_numbered():
    """Pins the azure-functions-durable behaviour the approval chain works around: two early events
    with the same name collapse into the last one, and it is handed to every later wait on that name."""

    def collect(context):
        seen = []
        for _ in range(3):
            seen.append((yield context.wait_for_external_event("vote")))
            yield context.call_activity("double", 0)
        return seen

    runner = make({"c": collect})
    runner.start("c", "c")
    runner.run_until_idle()
    runner.raise_event("c", "vote", "a")
    assert runner.step("c")  # deliver 'a'; the activity is now pending
    runner.raise_event("c", "vote", "b")
    runner.raise_event("c", "vote", "c")
    with pytest.warns(UserWarning, match="duplicate Task completion"):
        runner.run_until_idle()
    assert runner.status("c").output == ["a", "c", "c"]


def test_raise_event_to_missing_or_finished_instances_is_refused():
    runner = make({"sequence": sequence})
    with pytest.raises(InstanceNotFound):
        runner.raise_event("nope", "go")
    runner.start("sequence", "s", {"n": 1})
    runner.run_until_idle()
    with pytest.raises(InstanceNotRunning, match="Completed"):
        runner.raise_event("s", "go")


def test_starting_a_running_instance_again_is_refused():
    runner = make({"race": race})
    runner.start("race", "r")
    with pytest.raises(RunnerError, match="already exists"):
        runner.start("race", "r")


# ----- retries ----------------------------------------------------------------------------------------


def with_retry(context):
    try:
        result = yield context.call_activity_with_retry("flaky", df.RetryOptions(2_000, 3), "x")
        return {"result": result, "at": context.current_utc_datetime.isoformat()}
    except Exception as exc:
        return {"error": str(exc).splitlines()[0], "at": context.current_utc_datetime.isoformat()}


def test_retry_fails_twice_then_succeeds_with_durable_timers_between_attempts():
    flaky = Flaky(failures=2)
    runner = make({"r": with_retry}, {"flaky": flaky})
    runner.start("r", "r")
    runner.run_until_idle()
    assert flaky.calls == 1 and runner.status("r").runtime_status == "Running"  # waits on the retry timer
    runner.advance(timedelta(seconds=10))
    status = runner.status("r")
    assert flaky.calls == 3
    assert status.output == {"result": {"ok": "x"}, "at": (START + timedelta(seconds=4)).isoformat()}
    history = runner.history("r")
    steps = [describe(e) for e in history if e["EventType"] in (4, 5, 6, 10, 11)]
    assert steps == [
        "TaskScheduled#0 flaky",
        "TaskFailed#0",
        "TimerCreated#1",
        "TimerFired#1",
        "TaskScheduled#2 flaky",
        "TaskFailed#2",
        "TimerCreated#3",
        "TimerFired#3",
        "TaskScheduled#4 flaky",
        "TaskCompleted#4",
    ]


def test_retry_gives_up_after_max_attempts_and_the_orchestrator_sees_the_last_error():
    flaky = Flaky(failures=99)
    runner = make({"r": with_retry}, {"flaky": flaky})
    runner.start("r", "r")
    runner.run_until_complete("r")
    assert flaky.calls == 3
    assert runner.status("r").output["error"].startswith("ConnectionError: attempt 3 failed")


# ----- sub-orchestrations -----------------------------------------------------------------------------


def child(context):
    value = yield context.call_activity("double", context.get_input())
    if value > 100:
        raise ValueError("too big")
    return value


def parent(context):
    try:
        result = yield context.call_sub_orchestrator("child", context.get_input(), context.instance_id + ":c")
        return {"child": result}
    except Exception as exc:
        return {"failed": "too big" in str(exc)}


@pytest.mark.parametrize(("value", "expected"), [(4, {"child": 8}), (70, {"failed": True})])
def test_sub_orchestration_completes_or_fails_into_the_parent(value, expected):
    runner = make({"parent": parent, "child": child})
    runner.start("parent", "p", value)
    runner.run_until_idle()
    assert runner.status("p").output == expected
    assert runner.status("p:c").parent_instance_id == "p"
    created = [e for e in runner.history("p") if e["EventType"] == EventType.SUB_ORCHESTRATION_INSTANCE_CREATED]
    assert created[0]["InstanceId"] == "p:c" and created[0]["Name"] == "child"


# ----- replay ------------------------------------------------------------------------------------------


def test_replay_over_the_recorded_history_gives_the_same_actions():
    runner = make({"race": race})
    runner.start("race", "r")
    runner.raise_event("r", "go", 1)
    runner.run_until_idle()
    assert runner.replay("r") == runner.episodes("r")[-1]


def test_flatten_opens_compound_actions_in_order():
    actions = [[{"actionType": 0}, {"actionType": 11, "compoundActions": [{"actionType": 6}, {"actionType": 5}]}]]
    assert [a["actionType"] for a in flatten(actions)] == [0, 6, 5]


def test_clock_only_moves_forward():
    clock = ManualClock(START)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        clock.set(START - timedelta(seconds=1))
