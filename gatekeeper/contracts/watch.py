"""Contracts of the post-deploy watch flow (`post_deploy_watch`): the orchestration input and every
activity's input and output. Ids, counts and verdicts only; probe bodies and URLs stay in the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.approvals.chain import ChainPlan
from gatekeeper.store.tables import TENANT_ID_PATTERN

__all__ = [
    "FollowInput",
    "FollowResult",
    "RmmDone",
    "RmmInput",
    "RollbackDispatched",
    "RollbackInput",
    "RollbackPlan",
    "RoundInput",
    "RoundResult",
    "WatchCloseInput",
    "WatchClosed",
    "WatchInput",
    "WatchPlan",
    "rollback_gate_id",
    "wake_event_name",
]

_TENANT = Field(pattern=TENANT_ID_PATTERN.pattern)
WAKE_EVENT_PREFIX = "watch-wake-"
ROLLBACK_GATE_SUFFIX = "-rollback"


def wake_event_name(seq: int) -> str:
    """Numbered like the chain's votes: the Python SDK replays the last early event of a name to every later
    wait on that name, so one shared name would wake the watch forever."""
    return f"{WAKE_EVENT_PREFIX}{seq}"


def rollback_gate_id(watch_id: str) -> str:
    """The gate record an L2 rollback's approval chain decides (the approval page and route serve it)."""
    return watch_id + ROLLBACK_GATE_SUFFIX


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class WatchInput(_Contract):
    """The `post_deploy_watch` input, written by the dispatcher (`gatekeeper.ingest.dispatcher.watch_input`)."""

    tenant_id: str = _TENANT
    event_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    instance_id: str
    gate_id: str | None = None
    at: datetime | None = None  # set by the orchestrator for `watch_start` (its replay-safe time)


class WatchPlan(_Contract):
    """What `watch_start` returns: whether and how to watch."""

    watched: bool
    reason: str
    failed: bool = False  # the CI reported the deployment failed: straight to the rollback decision
    is_rollback: bool = False
    initial_delay_seconds: float = 0
    interval_seconds: float = 60
    rounds: int = 0
    probes: int = 0
    # The tenant's RMM (issue 15): `maintenance` puts the service's devices in maintenance for the window (and
    # out at the end); `rmm` resolves the RMM alert that caused a successful rollback. Absent in histories of
    # watches started before: False, so their replay schedules nothing new.
    maintenance: bool = False
    rmm: bool = False


class RoundInput(_Contract):
    """`watch_round`: run one round of probes (or none, when `probe` is false: a wake-up or a failed
    deployment), then assess."""

    tenant_id: str = _TENANT
    instance_id: str
    round: int = Field(ge=0)
    probe: bool = True
    at: datetime


class RoundResult(_Contract):
    result: Literal["pass", "fail", "error", "none"]
    verdict: str
    action: Literal["wait", "close", "rollback", "ask"]
    reason: str
    wakes: int = 0  # wake events raised so far: the next one to wait for


class RollbackInput(_Contract):
    """`watch_plan_rollback` / `watch_dispatch_rollback`."""

    tenant_id: str = _TENANT
    instance_id: str
    at: datetime
    reason: str = ""
    level: str | None = None


class RollbackPlan(_Contract):
    level: str
    reason: str
    chain: ChainPlan | None = None
    gate_id: str | None = None
    title: str = ""
    leased: bool = True  # false: another rollback of this environment runs; people are told
    follow_seconds: float = 1800


class RollbackDispatched(_Contract):
    ok: bool
    detail: str = ""
    run_id: str | None = None


class FollowInput(_Contract):
    tenant_id: str = _TENANT
    instance_id: str
    at: datetime


class FollowResult(_Contract):
    done: bool
    conclusion: str | None = None
    detail: str = ""


class RmmInput(_Contract):
    """`watch_rmm`: one RMM action for the watch (maintenance on / off, resolve the alerts behind a rollback)."""

    tenant_id: str = _TENANT
    instance_id: str
    action: Literal["maintenance_on", "maintenance_off", "resolve_alerts"]
    at: datetime


class RmmDone(_Contract):
    """What the RMM action came to (audited by the step); the watch goes on either way."""

    ok: bool
    skipped: bool = False
    detail: str = ""


class WatchCloseInput(_Contract):
    """`watch_close`: the watch's final state, audit and notice."""

    tenant_id: str = _TENANT
    instance_id: str
    outcome: Literal["healthy", "rolled_back", "rollback_failed", "human_task", "asked", "rejected", "not_watched"]
    reason: str
    at: datetime


class WatchClosed(_Contract):
    state: str
    notified: bool | None = None
