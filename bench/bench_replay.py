"""Orchestrator replay time against history length: the `approval_chain` orchestrator after 1, 10 and 100
decisions, replayed by the real azure-functions-durable code over the history the local runner recorded.

Every episode of an orchestration replays its whole history, so this is the cost each new vote pays.
Figures are ratios to the 1-decision history measured in the same run. The per-event ratio has a target:
replay must stay linear in history length (the cost per history event at 100 decisions within 2x of the
cost at 1 decision); the total ratios are informative.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from bench.common import Ratio, best_of
from devstack.runner import LocalOrchestrationRunner, ManualClock, RunnerGateway
from gatekeeper.contracts.gate import VoteEvent, chain_instance_id, vote_event_name
from orchestrators import bp

GROUP = "5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90"
SIZES = (1, 10, 100)
REPEATS = 5


def _ok(_payload: Any) -> dict[str, Any]:
    return {"ok": True}


def recorded_chain(decisions: int) -> tuple[LocalOrchestrationRunner, str]:
    """An approval chain that has taken `decisions` approvals (quorum not yet reached), and its id."""
    runner = LocalOrchestrationRunner.from_blueprint(bp, ManualClock())
    runner.activities = {name: _ok for name in runner.activities}  # the replay, not the gate's I/O, is measured
    gateway = RunnerGateway(runner)
    chain_id = chain_instance_id("gate-bench")
    plan = {
        "stages": [
            {
                "name": "ops",
                "approvers": [f"group:{GROUP}"],
                "quorum": decisions + 1,
                "timeout": "P2D",
                "on_timeout": "reject",
            }
        ]
    }
    runner.start(
        "approval_chain",
        chain_id,
        {
            "tenant_id": "bench",
            "gate_id": "gate-bench",
            "plan": plan,
            "requester": ["dev@contoso.com"],
            "title": "bench",
        },
    )
    runner.run_until_idle()
    for seq in range(decisions):
        runner.clock.advance(timedelta(seconds=30))
        vote = VoteEvent(
            seq=seq, voter_id=str(uuid.uuid4()), decision="approve", at=runner.clock.now(), stage=0, groups=(GROUP,)
        )
        gateway.raise_event(chain_id, vote_event_name(seq), vote.model_dump(mode="json"))
        runner.run_until_idle()
    status = runner.status(chain_id)
    assert status is not None and status.runtime_status == "Running", "the chain must still be waiting"
    return runner, chain_id


def replay_seconds(runner: LocalOrchestrationRunner, chain_id: str, rounds: int) -> float:
    expected = runner.episodes(chain_id)[-1]
    start = time.perf_counter()
    for _ in range(rounds):
        if runner.replay(chain_id) != expected:
            raise AssertionError("replay is not deterministic")
    return (time.perf_counter() - start) / rounds


def run() -> list[Ratio]:
    timings: dict[int, float] = {}
    events: dict[int, int] = {}
    for size in SIZES:
        runner, chain_id = recorded_chain(size)
        events[size] = len(runner.history(chain_id))
        rounds = max(3, 300 // size)
        timings[size] = best_of(lambda r=runner, c=chain_id, n=rounds: replay_seconds(r, c, n), REPEATS)
    base = timings[1]
    results = [
        Ratio(
            f"replay of {size} decisions ({events[size]} history events) vs 1 decision ({events[1]} events)",
            timings[size] * 1000,
            base * 1000,
            "ms",
            "",
            higher_is_better=False,
        )
        for size in SIZES[1:]
    ]
    per_event = {size: timings[size] / events[size] for size in SIZES}
    results.append(
        Ratio(
            "replay cost per history event, 100 decisions vs 1 decision",
            per_event[100] * 1e6,
            per_event[1] * 1e6,
            "us/event",
            "<= 2.0",
            higher_is_better=False,
        )
    )
    return results
