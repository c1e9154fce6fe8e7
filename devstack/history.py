"""Durable Task history events in the JSON shape the Functions host hands to the Python SDK.

The local runner builds histories from these so that the SDK's own replay code (not an imitation of it)
decides what an orchestrator does. Field names follow DurableTask.Core's `HistoryEvent` classes as the
Durable Functions extension serialises them (PascalCase, `EventType` as the enum number), which is also
what the SDK's tests build (`tests/test_utils/ContextBuilder.py` in azure-functions-durable-python).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

# The SDK parses timestamps with this format (azure.durable_functions.constants.DATETIME_STRING_FORMAT).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class EventType(IntEnum):
    """DurableTask.Core.History.EventType (same numbers as the SDK's HistoryEventType)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


def timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("history timestamps must be timezone-aware (UTC)")
    return value.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _event(kind: EventType, at: datetime, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": timestamp(at), **fields}


def orchestrator_started(at: datetime) -> dict[str, Any]:
    return _event(EventType.ORCHESTRATOR_STARTED, at)


def orchestrator_completed(at: datetime) -> dict[str, Any]:
    return _event(EventType.ORCHESTRATOR_COMPLETED, at)


def execution_started(
    at: datetime,
    name: str,
    instance_id: str,
    execution_id: str,
    input_json: str | None,
    parent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return _event(
        EventType.EXECUTION_STARTED,
        at,
        Name=name,
        Version="",
        Input=input_json,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent,
    )


def execution_completed(at: datetime, status: str, result_json: str | None) -> dict[str, Any]:
    """`status` is DurableTask's OrchestrationStatus name: Completed, Failed, ContinuedAsNew."""
    return _event(EventType.EXECUTION_COMPLETED, at, OrchestrationStatus=status, Result=result_json)


def task_scheduled(at: datetime, seq: int, name: str, input_json: str | None) -> dict[str, Any]:
    return _event(EventType.TASK_SCHEDULED, at, seq, Name=name, Version="", Input=input_json)


def task_completed(at: datetime, seq: int, result_json: str | None) -> dict[str, Any]:
    return _event(EventType.TASK_COMPLETED, at, TaskScheduledId=seq, Result=result_json)


def task_failed(at: datetime, seq: int, reason: str, details: str) -> dict[str, Any]:
    return _event(EventType.TASK_FAILED, at, TaskScheduledId=seq, Reason=reason, Details=details)


def timer_created(at: datetime, seq: int, fire_at: datetime) -> dict[str, Any]:
    return _event(EventType.TIMER_CREATED, at, seq, FireAt=timestamp(fire_at))


def timer_fired(at: datetime, seq: int, fire_at: datetime) -> dict[str, Any]:
    return _event(EventType.TIMER_FIRED, at, TimerId=seq, FireAt=timestamp(fire_at))


def event_raised(at: datetime, name: str, input_json: str | None) -> dict[str, Any]:
    return _event(EventType.EVENT_RAISED, at, Name=name, Input=input_json)


def sub_orchestration_created(
    at: datetime, seq: int, name: str, instance_id: str, input_json: str | None
) -> dict[str, Any]:
    return _event(
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        at,
        seq,
        Name=name,
        Version="",
        InstanceId=instance_id,
        Input=input_json,
    )


def sub_orchestration_completed(at: datetime, seq: int, result_json: str | None) -> dict[str, Any]:
    return _event(EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, at, TaskScheduledId=seq, Result=result_json)


def sub_orchestration_failed(at: datetime, seq: int, reason: str, details: str) -> dict[str, Any]:
    return _event(EventType.SUB_ORCHESTRATION_INSTANCE_FAILED, at, TaskScheduledId=seq, Reason=reason, Details=details)


def describe(event: dict[str, Any]) -> str:
    """A one-line summary for test failure messages and the demo: `TaskScheduled#3 gate_evaluate`."""
    kind = EventType(event["EventType"]).name.title().replace("_", "")
    ref = event.get("TaskScheduledId", event.get("TimerId"))
    seq = event["EventId"] if event["EventId"] >= 0 else ref
    name = event.get("Name") or ""
    return f"{kind}{'#' + str(seq) if seq is not None and seq >= 0 else ''} {name}".strip()
