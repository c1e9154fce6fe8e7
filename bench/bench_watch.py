"""A waiting post-deploy watch against a waiting gate: history events per probe round and replay time per
round at 100 rounds, as ratios to one round, and the watch's history growth per round against the approval
chain's per vote (bench_replay's waiting gate), replayed by the real azure-functions-durable code.

Each round is one activity and one durable timer raced against a wake event (two episodes: timer fired, then
activity completed), so the history grows by a constant 8 events per round, where a vote adds 3 (one episode,
no activity); every episode replays the whole history, as a gate's does. Target: replay per history event at
100 rounds within 2x of one round (linear: a watch waits at a constant cost per round, like a gate per vote);
the other figures are informative.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial
from typing import Any

from bench.bench_replay import recorded_chain
from bench.common import Ratio, best_of
from devstack.runner import LocalOrchestrationRunner, ManualClock
from orchestrators import bp

WATCH = "watch-bench"
SIZES = (1, 100)
REPEATS = 5


def recorded_watch(rounds: int) -> LocalOrchestrationRunner:
    """A watch that has run `rounds` probe rounds and still waits for the next (the window is longer)."""
    runner = LocalOrchestrationRunner.from_blueprint(bp, ManualClock())
    plan = {"watched": True, "reason": "watched", "interval_seconds": 60, "rounds": 10_000, "probes": 1}
    wait = {"result": "pass", "verdict": "continue", "action": "wait", "reason": "within the window", "wakes": 0}
    answers: dict[str, Any] = {"watch_start": plan, "watch_round": wait}

    def scripted(name: str) -> Any:
        def answer(_payload: Any) -> Any:
            return answers.get(name, {"ok": True})

        return answer

    runner.activities = {name: scripted(name) for name in runner.activities}
    runner.start("post_deploy_watch", WATCH, {"tenant_id": "bench", "event_key": "ab" * 32, "instance_id": WATCH})
    runner.run_until_idle()
    for _ in range(rounds - 1):
        runner.advance(timedelta(minutes=1))
    status = runner.status(WATCH)
    assert status is not None and status.runtime_status == "Running", "the watch must still be waiting"
    return runner


def replay_seconds(runner: LocalOrchestrationRunner, instance: str, repeat: int) -> float:
    expected = runner.episodes(instance)[-1]
    start = time.perf_counter()
    for _ in range(repeat):
        if runner.replay(instance) != expected:
            raise AssertionError("replay is not deterministic")
    return (time.perf_counter() - start) / repeat


def run() -> list[Ratio]:
    events: dict[int, int] = {}
    timings: dict[int, float] = {}
    for size in SIZES:
        runner = recorded_watch(size)
        events[size] = len(runner.history(WATCH))
        repeat = max(3, 300 // size)
        timings[size] = best_of(partial(replay_seconds, runner, WATCH, repeat), REPEATS)
    per_round = (events[100] - events[1]) / 99
    chain_1, chain_id = recorded_chain(1)
    chain_100, _ = recorded_chain(100)
    per_vote = (len(chain_100.history(chain_id)) - len(chain_1.history(chain_id))) / 99
    per_event = {size: timings[size] / events[size] for size in SIZES}
    return [
        Ratio(
            f"history of a watch after 100 rounds ({events[100]} events) vs after 1 ({events[1]} events)",
            events[100],
            events[1],
            "events",
            "",
            higher_is_better=False,
        ),
        Ratio(
            "history events per probe round vs per vote of a waiting gate's approval chain",
            per_round,
            per_vote,
            "events",
            "",
            higher_is_better=False,
        ),
        Ratio(
            "replay time per probe round, 100 rounds vs 1 round",
            timings[100] / 100 * 1000,
            timings[1] * 1000,
            "ms/round",
            "",
            higher_is_better=False,
        ),
        Ratio(
            "replay cost per history event, 100 rounds vs 1 round",
            per_event[100] * 1e6,
            per_event[1] * 1e6,
            "us/event",
            "<= 2.0",
            higher_is_better=False,
        ),
    ]
