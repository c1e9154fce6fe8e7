"""Product telemetry for the Azure Monitor workbook (`infra/workbook.json`): one structured log line per event.

Why log lines: Python Azure Functions send `logging` records to Application Insights as `traces` (message,
severity, category) but drop `extra=` fields, and a telemetry SDK would be one more dependency. So each event
is one INFO record on logger `gatekeeper.telemetry` whose message is `GATEKEEPER_EVENT ` followed by compact
JSON, `{"name": "<event>", <field>: <scalar>, ...}`, and the workbook reads it back with

    traces | where message startswith "GATEKEEPER_EVENT " | extend e = parse_json(substring(message, 17))
    | where tostring(e.name) == "GateDecision" | ...

The events and their fields are fixed (`FIELDS`): `emit` refuses an unknown event, a missing or unknown
field, a non-scalar value (objects, lists, `SecretStr`) and field names that look like secrets or free text,
so the workbook can rely on exactly what is emitted and nothing sensitive is. `docs/telemetry.md` lists them.

Human-in-the-loop (HITL) override, precisely: an approval chain that people decided (not a timeout) against
the gate's automated quality verdict, as recorded when the gate was evaluated:
- approved although the quality result was "fail" or "warning" (`approved_despite_fail`,
  `approved_despite_warning`), or
- rejected although the quality result was "pass" with a score, i.e. objectives were actually evaluated
  (`rejected_despite_pass`; a "pass" with no score means nothing was assessed, so there is nothing to
  override), or
- an L1 change that ran automatically flagged for rollback by a person (`flagged_for_rollback`, from the
  follow-up on its notice: `gatekeeper.gates.followup`).
L3 gates are not overrides: policy made them human-only and automation refused, so no automated verdict was
set aside (they appear as `GateOutcome` with `decided_by` "person"). Timeouts are not human decisions.

Emit only from activities and HTTP triggers, never from orchestrator code: replays would repeat the line.
Activities run at least once, so a rare retry can repeat an event; counts are approximate to that degree.
"""

from __future__ import annotations

import json
import logging
import math
import re
from enum import StrEnum
from typing import Any

LOGGER_NAME = "gatekeeper.telemetry"
PREFIX = "GATEKEEPER_EVENT "
MAX_STRING = 256  # longer strings are cut: telemetry carries names and verdicts, not documents

log = logging.getLogger(LOGGER_NAME)

Scalar = str | int | float | bool | None


class Event(StrEnum):
    GATE_DECISION = "GateDecision"  # a gate was evaluated (one per gate request)
    GATE_OUTCOME = "GateOutcome"  # a gate reached its final state
    APPROVAL_REQUESTED = "ApprovalRequested"  # an approval stage asked its approvers
    APPROVAL_DECIDED = "ApprovalDecided"  # an approval chain closed: approved, rejected or timed out
    CALLBACK_FAILED = "CallbackFailed"  # a pipeline callback attempt failed (final: after all retries)
    HITL_OVERRIDE = "HitlOverride"  # people decided against the automated quality verdict (see above)
    INGEST_REJECTED = "IngestRejected"  # an HTTP route answered with a problem (4xx, or a handled 5xx)
    WATCH_OUTCOME = "WatchOutcome"  # a post-deploy watch ended: change failure rate and time to restore
    ACTION_REQUESTED = "ActionRequested"  # a step or agent asked for one command (POST /api/actions)
    ACTION_RESOLVED = "ActionResolved"  # an action ended: cancelled, expired, or reported executed/skipped
    EVENT_PUBLISH_FAILED = "EventPublishFailed"  # the event mesh refused a batch after the adapter's retries
    MCP_TOOL_CALLED = "McpToolCalled"  # an agent called a Gatekeeper MCP tool (status: the action's, or the error)
    MCP_GUARD_INTERCEPTED = "McpGuardIntercepted"  # mcp-guard held a tool call: its level and what it decided


EVENT_NAMES: frozenset[str] = frozenset(e.value for e in Event)

# Every field of every event; all are required (None where unknown), no others are accepted.
FIELDS: dict[Event, frozenset[str]] = {
    Event.GATE_DECISION: frozenset(
        {
            "tenant",
            "instance_id",
            "level",
            "rule",
            "source",
            "environment",
            "action",
            "blocked",
            "quality",
            "quality_score",
            "approval_stages",
        }
    ),
    Event.GATE_OUTCOME: frozenset(
        {
            "tenant",
            "instance_id",
            "level",
            "status",
            "decided_by",
            "callback_ok",
            "duration_seconds",
        }
    ),
    Event.APPROVAL_REQUESTED: frozenset(
        {
            "tenant",
            "instance_id",
            "stage",
            "approvers",
            "quorum",
            "notified",
        }
    ),
    Event.APPROVAL_DECIDED: frozenset(
        {
            "tenant",
            "instance_id",
            "level",
            "outcome",
            "decided_by",
            "stage",
            "votes",
            "escalations",
            "latency_seconds",
            "quality",
        }
    ),
    Event.CALLBACK_FAILED: frozenset({"tenant", "instance_id", "target", "status_code", "final"}),
    Event.HITL_OVERRIDE: frozenset(
        {
            "tenant",
            "instance_id",
            "level",
            "kind",
            "decision",
            "quality",
            "quality_score",
        }
    ),
    Event.INGEST_REJECTED: frozenset({"route", "status", "slug"}),
    Event.WATCH_OUTCOME: frozenset(
        {
            "tenant",
            "instance_id",
            "environment",
            "outcome",
            "change_failed",
            "rolled_back",
            "time_to_restore_seconds",
            "duration_seconds",
        }
    ),
    Event.ACTION_REQUESTED: frozenset({"tenant", "instance_id", "level", "action", "environment", "auth"}),
    Event.ACTION_RESOLVED: frozenset({"tenant", "instance_id", "level", "status", "outcome", "refused"}),
    Event.EVENT_PUBLISH_FAILED: frozenset({"tenant", "instance_id", "types", "status_code"}),
    Event.MCP_TOOL_CALLED: frozenset({"tenant", "tool", "status", "agent"}),
    Event.MCP_GUARD_INTERCEPTED: frozenset({"tool", "level", "decision", "instance_id"}),
}

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FORBIDDEN_WORDS = ("token", "secret", "password", "comment", "credential", "authorization", "signature")


def emit(name: str, **fields: Scalar) -> dict[str, Scalar]:
    """Log one telemetry event and return what was logged. Raises ValueError (unknown event, missing or
    unknown field, non-finite number) or TypeError (a value that is not a JSON scalar), naming the field."""
    try:
        event = Event(name)
    except ValueError:
        raise ValueError(f"telemetry: unknown event {name!r} (known: {', '.join(sorted(EVENT_NAMES))})") from None
    expected = FIELDS[event]
    missing, unknown = expected - fields.keys(), fields.keys() - expected
    if missing:
        raise ValueError(f"telemetry: {event.value}: missing field(s) {', '.join(sorted(missing))}")
    if unknown:
        raise ValueError(f"telemetry: {event.value}: unknown field(s) {', '.join(sorted(unknown))}")
    payload: dict[str, Scalar] = {"name": event.value}
    for key in sorted(fields):
        payload[key] = _scalar(event, key, fields[key])
    log.info("%s%s", PREFIX, json.dumps(payload, separators=(",", ":"), allow_nan=False))
    return payload


def _scalar(event: Event, key: str, value: Any) -> Scalar:
    if not FIELD_NAME.match(key) or any(word in key for word in FORBIDDEN_WORDS):
        raise ValueError(f"telemetry: {event.value}: field name {key!r} is not allowed")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"telemetry: {event.value}: field {key!r} must be a finite number")
        return value
    if isinstance(value, str):  # a StrEnum is a str: its value is logged
        return str(value)[:MAX_STRING]
    raise TypeError(f"telemetry: {event.value}: field {key!r} must be a JSON scalar, not {type(value).__name__}")


def parse(message: str) -> dict[str, Any] | None:
    """The event in one log message, or None when the message is not a telemetry line (tests and tools)."""
    if not message.startswith(PREFIX):
        return None
    try:
        data = json.loads(message[len(PREFIX) :])
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("name") in EVENT_NAMES else None


def override_kind(decision: str | None, quality: str | None, quality_score: float | None) -> str | None:
    """The HITL override a people's decision makes, or None (see the module docstring for the definition).
    `decision` is "approved" or "rejected" by approvers; pass None for a timeout or an automated decision."""
    if decision == "approved" and quality in ("fail", "warning"):
        return f"approved_despite_{quality}"
    if decision == "rejected" and quality == "pass" and quality_score is not None:
        return "rejected_despite_pass"
    return None
