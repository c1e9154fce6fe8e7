"""The watch's decision core: pure functions over the probe results so far, the limits and the clock.

Argo Rollouts' AnalysisRun semantics, per watch rather than per metric:
- a round of probes is `pass` (every probe healthy), `fail` (some probe answered unhealthy) or `error` (no
  probe answered unhealthy but some could not be evaluated: timeout, refused connection, bad body);
- more than `failure_limit` failed rounds -> UNHEALTHY (roll back);
- more than `consecutive_error_limit` errored rounds in a row -> INCONCLUSIVE (people decide; a pass in
  between resets the count, as in Argo);
- the window has passed with neither -> HEALTHY (the deployment becomes the last known good one);
- otherwise CONTINUE.
A deployment reported failed by its CI, or an Azure Monitor alert fired on the environment's resources, is
UNHEALTHY at once. What to do about a verdict is `action_for`: never a rollback of a rollback, never while
someone holds the watch, never twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from gatekeeper.policy.decision import GateDecision
from gatekeeper.policy.levels import GateLevel

RoundResult = Literal["pass", "fail", "error"]


class Verdict(StrEnum):
    CONTINUE = "continue"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    INCONCLUSIVE = "inconclusive"


class Action(StrEnum):
    WAIT = "wait"  # keep probing
    CLOSE = "close"  # the window passed clean: record last known good, end quietly
    ROLLBACK = "rollback"  # start the rollback at the policy's level
    ASK = "ask"  # tell people and wait for their call (inconclusive, held, or a rollback's own watch failed)


@dataclass(frozen=True)
class Limits:
    window: timedelta
    initial_delay: timedelta
    failure_limit: int
    consecutive_error_limit: int


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    failures: int
    consecutive_errors: int
    reason: str


def round_result(probe_outcomes: Sequence[Literal["pass", "fail", "error"]]) -> RoundResult:
    """One round's result from its probes: any fail fails it; else any error errs it; else it passes.
    A round without probes passes (a watch that only listens for alerts)."""
    if "fail" in probe_outcomes:
        return "fail"
    if "error" in probe_outcomes:
        return "error"
    return "pass"


def assess(rounds: Sequence[RoundResult], limits: Limits, started_at: datetime, now: datetime) -> Assessment:
    """The verdict after `rounds` (oldest first) at `now`, for a watch that started at `started_at`."""
    failures = sum(1 for r in rounds if r == "fail")
    consecutive = 0
    for result in reversed(rounds):
        if result != "error":
            break
        consecutive += 1
    if failures > limits.failure_limit:
        return Assessment(
            Verdict.UNHEALTHY,
            failures,
            consecutive,
            f"{failures} failed probe round(s), more than the failure limit of {limits.failure_limit}",
        )
    if consecutive > limits.consecutive_error_limit:
        return Assessment(
            Verdict.INCONCLUSIVE,
            failures,
            consecutive,
            f"{consecutive} probe round(s) in a row could not be evaluated, more than the consecutive error "
            f"limit of {limits.consecutive_error_limit}",
        )
    if now >= started_at + limits.initial_delay + limits.window:
        return Assessment(
            Verdict.HEALTHY,
            failures,
            consecutive,
            f"the verification window passed with {failures} failed round(s) of {len(rounds)}",
        )
    return Assessment(Verdict.CONTINUE, failures, consecutive, f"{len(rounds)} round(s) so far, {failures} failed")


def action_for(verdict: Verdict, *, is_rollback: bool, held: bool, rolled_back: bool) -> tuple[Action, str]:
    """What the watch does about a verdict, and why."""
    if verdict is Verdict.CONTINUE:
        return Action.WAIT, "within the window"
    if verdict is Verdict.HEALTHY:
        return Action.CLOSE, "healthy: this deployment is now the last known good one"
    if verdict is Verdict.INCONCLUSIVE:
        return Action.ASK, "inconclusive: people decide (roll back now, or let it be)"
    if rolled_back:
        return Action.ASK, "already rolled back once for this deployment: people decide"
    if is_rollback:
        return Action.ASK, "the rollback itself is unhealthy: no rollback of a rollback, people decide"
    if held:
        return Action.ASK, "unhealthy, but automatic rollback is on hold: people decide"
    return Action.ROLLBACK, "unhealthy: roll back"


def rollback_level(configured: GateLevel, decision: GateDecision | None) -> tuple[GateLevel, str]:
    """The rollback's level: the environment's configured `rollback.level`, raised (never lowered) by the
    policy's decision for a `rollback` action when a rule matched one, and L3 when the policy blocks it."""
    if decision is None or decision.rule is None:
        return configured, f"rollback level {configured} from the watch settings"
    if decision.blocked:
        return GateLevel.L3, f"rule {decision.rule!r} blocks rollbacks now: L3, people carry it out"
    level = configured.raise_to(decision.level)
    if level != configured:
        why = "; ".join(r for r in decision.reasons if "matched" in r or "raised" in r)
        return level, f"rollback level raised from {configured} to {level} by the policy: {why}"[:500]
    return level, f"rollback level {level} (rule {decision.rule!r} does not raise it)"


def escalate_after_failed_rollback() -> tuple[GateLevel, str]:
    """A rollback that fails is handed to people at once: L3, never a retry loop."""
    return GateLevel.L3, "the rollback run failed: escalated to L3, people carry it out"
