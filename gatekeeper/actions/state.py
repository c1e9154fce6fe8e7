"""What an action's status is: the pure mapping from its row and its gate to the API's answer, the fields of
that answer (docs/openapi/actions.yaml `ActionState`), and the long poll's `wait` parameter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from gatekeeper.actions.store import ActionRecord
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.errors import InvalidInput

if TYPE_CHECKING:
    from gatekeeper.gates.store import GateRecord

MAX_WAIT_SECONDS = 25  # long poll: well under the Functions HTTP timeout (230 s at the front end)
_WAIT = re.compile(r"^[0-9]{1,3}$")
STATE_FIELDS = (
    "id",
    "status",
    "level",
    "decision",
    "reason",
    "decided_by",
    "decided_at",
    "approval_url",
    "command",
    "action",
    "environment",
    "outcome",
)
"""The fields of `GET /api/actions/{id}` (docs/openapi/actions.yaml `ActionState`), in order."""
STATUSES = ("pending", "approved", "denied", "expired", "cancelled", "human_only")


@dataclass(frozen=True)
class ActionState:
    status: str  # pending | approved | denied | expired | cancelled | human_only | expiring (internal)
    decision: str | None
    reason: str
    decided_at: datetime | None = None


def action_state(record: ActionRecord, gate: GateRecord | None, now: datetime) -> ActionState:
    """What an action's status is, from its row and its gate: the row's own closing (cancel, timeout) and
    the immediate answer (L0/L1, L3, blocked) first, then the gate's outcome."""
    if record.closed == "cancelled":
        return ActionState("cancelled", None, "cancelled by the requester", record.closed_at)
    if record.closed == "expired":
        return ActionState("expired", "denied", "no decision before the request's timeout", record.closed_at)
    if record.immediate == "approved":
        return ActionState("approved", "approved", record.reason, record.created_at)
    if record.immediate is not None:
        return ActionState(record.immediate, "denied", record.reason, record.created_at)
    final = gate is not None and gate.status in (GateStatus.APPROVED, GateStatus.REJECTED, GateStatus.HUMAN_TASK)
    if gate is None or not final:
        if record.expires_at is not None and now >= record.expires_at:
            return ActionState("expiring", None, "")
        return ActionState("pending", None, "awaiting approval")
    reason = gate.outcome_reason or ""
    if gate.status is GateStatus.APPROVED:
        return ActionState("approved", "approved", reason, gate.decided_at)
    if gate.status is GateStatus.HUMAN_TASK:
        return ActionState("human_only", "denied", reason, gate.decided_at)
    if "(timeout)" in reason:
        return ActionState("expired", "denied", reason, gate.decided_at)
    return ActionState("denied", "denied", reason, gate.decided_at)


def immediate_answer(level: str, blocked: bool, reasons: tuple[str, ...]) -> tuple[str | None, str]:
    """What the caller hears at once: L0/L1 approved (L1 people are told afterwards), L3 human only, a
    policy block denied; None for L2, where a person decides first."""
    if blocked:
        return "denied", "; ".join(reasons)[:500] or "blocked by policy"
    if level in ("L0", "L1"):
        return "approved", "L0: fully automated" if level == "L0" else "L1: approved, people are notified afterwards"
    if level == "L3":
        return "human_only", "L3: human only, automation refused; a human task was opened"
    return None, ""


def parse_wait(wait: str | None) -> int:
    if wait is None or wait == "":
        return 0
    if not _WAIT.fullmatch(wait) or int(wait) > MAX_WAIT_SECONDS:
        raise InvalidInput(f"wait: a whole number of seconds from 0 to {MAX_WAIT_SECONDS}", "wait")
    return int(wait)
