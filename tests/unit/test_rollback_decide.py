"""The watch's pure decision core: Argo-style limits, the window, and what to do about a verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.rollback.decide import (
    Action,
    Limits,
    Verdict,
    action_for,
    assess,
    escalate_after_failed_rollback,
    round_result,
)

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
LIMITS = Limits(
    window=timedelta(minutes=10), initial_delay=timedelta(minutes=1), failure_limit=1, consecutive_error_limit=2
)
rounds = st.lists(st.sampled_from(["pass", "fail", "error"]), max_size=40)
limits = st.builds(
    Limits,
    window=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=7)),
    initial_delay=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=24)),
    failure_limit=st.integers(0, 100),
    consecutive_error_limit=st.integers(0, 100),
)
offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9))


def trailing_errors(results: list[str]) -> int:
    count = 0
    for r in reversed(results):
        if r != "error":
            break
        count += 1
    return count


def test_examples_follow_argo_semantics():
    within = START + timedelta(minutes=5)
    assert assess(["pass", "fail"], LIMITS, START, within).verdict is Verdict.CONTINUE  # 1 failure allowed
    assert assess(["fail", "pass", "fail"], LIMITS, START, within).verdict is Verdict.UNHEALTHY
    assert assess(["error", "error"], LIMITS, START, within).verdict is Verdict.CONTINUE
    assert assess(["error", "error", "error"], LIMITS, START, within).verdict is Verdict.INCONCLUSIVE
    assert assess(["error", "error", "pass", "error", "error"], LIMITS, START, within).verdict is Verdict.CONTINUE
    end = START + timedelta(minutes=11)
    assert assess(["pass"] * 11, LIMITS, START, end - timedelta(microseconds=1)).verdict is Verdict.CONTINUE
    healthy = assess(["pass", "fail"] + ["pass"] * 9, LIMITS, START, end)
    assert healthy.verdict is Verdict.HEALTHY and healthy.failures == 1
    assert "1 failed round(s) of 11" in healthy.reason


def test_a_round_fails_on_any_failure_and_errs_only_without_one():
    assert round_result(["pass", "error", "fail"]) == "fail"
    assert round_result(["pass", "error"]) == "error"
    assert round_result(["pass", "pass"]) == "pass"
    assert round_result([]) == "pass"  # a watch that only listens for alerts


@settings(derandomize=True, max_examples=300, deadline=None)
@given(rounds, limits, offsets)
def test_the_verdict_is_exactly_the_limits_and_the_clock(results, lim, offset):
    now = START + offset
    got = assess(results, lim, START, now)
    failures = results.count("fail")
    assert got.failures == failures and got.consecutive_errors == trailing_errors(results)
    if failures > lim.failure_limit:
        assert got.verdict is Verdict.UNHEALTHY  # failures win over errors and over the clock
    elif trailing_errors(results) > lim.consecutive_error_limit:
        assert got.verdict is Verdict.INCONCLUSIVE
    elif now >= START + lim.initial_delay + lim.window:
        assert got.verdict is Verdict.HEALTHY
    else:
        assert got.verdict is Verdict.CONTINUE


@settings(derandomize=True, max_examples=200, deadline=None)
@given(rounds, limits, offsets, st.sampled_from(["pass", "fail", "error"]))
def test_one_more_round_never_turns_unhealthy_into_anything_else(results, lim, offset, extra):
    now = START + offset
    if assess(results, lim, START, now).verdict is Verdict.UNHEALTHY:
        assert assess([*results, extra], lim, START, now).verdict is Verdict.UNHEALTHY


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.sampled_from(list(Verdict)), st.booleans(), st.booleans(), st.booleans())
def test_never_a_rollback_of_a_rollback_nor_while_held_nor_twice(verdict, is_rollback, held, rolled_back):
    action, reason = action_for(verdict, is_rollback=is_rollback, held=held, rolled_back=rolled_back)
    assert reason
    if action is Action.ROLLBACK:
        assert verdict is Verdict.UNHEALTHY and not (is_rollback or held or rolled_back)
    if verdict is Verdict.UNHEALTHY and not (is_rollback or held or rolled_back):
        assert action is Action.ROLLBACK
    expected = {Verdict.CONTINUE: Action.WAIT, Verdict.HEALTHY: Action.CLOSE, Verdict.INCONCLUSIVE: Action.ASK}
    if verdict in expected:
        assert action is expected[verdict]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"is_rollback": True, "held": False, "rolled_back": False}, "no rollback of a rollback"),
        ({"is_rollback": False, "held": True, "rolled_back": False}, "on hold"),
        ({"is_rollback": False, "held": False, "rolled_back": True}, "already rolled back"),
    ],
)
def test_an_unhealthy_deployment_that_may_not_roll_back_asks_people_saying_why(flags, words):
    action, reason = action_for(Verdict.UNHEALTHY, **flags)
    assert action is Action.ASK and words in reason


def test_a_failed_rollback_goes_to_l3():
    level, reason = escalate_after_failed_rollback()
    assert level.value == "L3" and "L3" in reason
