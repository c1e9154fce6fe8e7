"""Product telemetry: gate lifecycle facts as Application Insights custom events, plus OpenTelemetry metrics.

Each event is one INFO record on logger `gatekeeper.telemetry`. Its message is `GATEKEEPER_EVENT ` followed
by compact JSON, `{"name": "<event>", <field>: <scalar>, ...}` (the local line: tests, the demo, `func start`),
and its attributes carry the same fields for OpenTelemetry: `microsoft.custom_event.name` makes Azure Monitor's
exporter send the record as a custom event (`customEvents`: name, customDimensions, and the numbers again in
customMeasurements), which the workbook (`infra/workbook.json`) and the alert rules (`infra/modules/alerts.bicep`)
read:

    customEvents | where name == "GateDecision" | extend level = tostring(customDimensions.level) | ...

The exporter is configured once per process, on the first event or measurement, by the factory the entry point
hands to `enable` (function_app.py -> `gatekeeper.services.azure_monitor`): only when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, with the managed identity (Entra ID; the component has local
auth disabled). Unconfigured (local, tests), nothing of OpenTelemetry is imported and only the line is logged.

The events, their fields and the metrics are fixed (`FIELDS`, `METRICS`): `emit` and `measure` refuse an
unknown event or metric, a missing or unknown field, a non-scalar value (objects, lists, `SecretStr`) and field
names that look like secrets or free text, so the workbook and the alerts can rely on exactly what is emitted
and nothing sensitive is. `docs/telemetry.md` lists them.

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
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

LOGGER_NAME = "gatekeeper.telemetry"
PREFIX = "GATEKEEPER_EVENT "
MAX_STRING = 256  # longer strings are cut: telemetry carries names and verdicts, not documents
CUSTOM_EVENT_NAME = "microsoft.custom_event.name"  # Azure Monitor: this log record is a custom event
CUSTOM_MEASUREMENTS = "microsoft.custom_measurements"  # Azure Monitor: customMeasurements (JSON of numbers)

log = logging.getLogger(LOGGER_NAME)
setup_log = logging.getLogger("gatekeeper.otel")  # not a child of LOGGER_NAME: never sent as an event

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
    DEAD_LETTERED = "DeadLettered"  # a queue message was kept as a dead letter (bad, or poison after retries)
    DEAD_LETTER_REPLAYED = "DeadLetterReplayed"  # `deadletters replay` sent a dead letter back, or refused it
    KEY_UNWRAP_FAILED = "KeyUnwrapFailed"  # Key Vault (or the local key) did not unwrap a tenant's data key
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
            "commit_time",  # when the gated commit was made (RFC 3339, UTC), where known: DORA lead time
            "commit_age_seconds",  # seconds from that commit to the gate request (build and test)
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
            "deadline_seconds",
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
            "gate_id",
            "environment",
            "outcome",
            "change_failed",
            "rolled_back",
            "time_to_restore_seconds",
            "duration_seconds",
        }
    ),
    # `agent`: the token's client application (azp/appid); `tool`: the command's tool name only
    # (gatekeeper.actions.tool.command_tool: the MCP tool or the program, never an argument); `via`: "mcp" or null.
    Event.ACTION_REQUESTED: frozenset(
        {"tenant", "instance_id", "level", "action", "environment", "auth", "via", "agent", "tool"}
    ),
    Event.ACTION_RESOLVED: frozenset(
        {"tenant", "instance_id", "level", "status", "outcome", "refused", "agent", "tool"}
    ),
    Event.EVENT_PUBLISH_FAILED: frozenset({"tenant", "instance_id", "types", "status_code"}),
    Event.DEAD_LETTERED: frozenset({"queue", "cause", "dequeue_count"}),
    Event.DEAD_LETTER_REPLAYED: frozenset({"queue", "outcome"}),
    Event.KEY_UNWRAP_FAILED: frozenset({"tenant", "kind", "status_code"}),
    Event.MCP_TOOL_CALLED: frozenset({"tenant", "tool", "status", "agent"}),
    Event.MCP_GUARD_INTERCEPTED: frozenset({"tool", "level", "decision", "instance_id"}),
}

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FORBIDDEN_WORDS = ("token", "secret", "password", "comment", "credential", "authorization", "signature")
# Attributes every logging.LogRecord has: a field of that name would clash with `extra=` (KeyError).
RESERVED_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


# ----- metrics ------------------------------------------------------------------------------------------


class Metric(StrEnum):
    """OpenTelemetry instruments; Application Insights stores them in `customMetrics` under these names."""

    GATES = "gatekeeper.gates"
    APPROVAL_LATENCY = "gatekeeper.approval.latency"
    CALLBACK_FAILURES = "gatekeeper.callback.failures"
    DEAD_LETTERS = "gatekeeper.dead_letters"
    QUEUE_AGE = "gatekeeper.queue.age"


@dataclass(frozen=True)
class MetricSpec:
    """One instrument: its kind, unit and attributes, and the event that feeds it (None: `measure` only).
    `value` names the event field measured (histograms); a counter adds 1 per event."""

    kind: Literal["counter", "histogram"]
    unit: str
    description: str
    attributes: frozenset[str]
    event: Event | None = None
    value: str | None = None


METRICS: dict[Metric, MetricSpec] = {
    Metric.GATES: MetricSpec(
        "counter",
        "{gate}",
        "Gates evaluated, by tenant, level, source and rule.",
        frozenset({"tenant", "level", "source", "rule"}),
        Event.GATE_DECISION,
    ),
    Metric.APPROVAL_LATENCY: MetricSpec(
        "histogram",
        "s",
        "Seconds from the first approval request to the deciding vote (or the deadline), by deciding stage.",
        frozenset({"tenant", "level", "stage", "outcome", "decided_by"}),
        Event.APPROVAL_DECIDED,
        "latency_seconds",
    ),
    Metric.CALLBACK_FAILURES: MetricSpec(
        "counter",
        "{attempt}",
        "Pipeline callback attempts that failed; final: the pipeline was never told.",
        frozenset({"tenant", "target", "final"}),
        Event.CALLBACK_FAILED,
    ),
    Metric.DEAD_LETTERS: MetricSpec(
        "counter",
        "{message}",
        "Queue messages kept as dead letters, by queue and cause.",
        frozenset({"queue", "cause"}),
        Event.DEAD_LETTERED,
    ),
    Metric.QUEUE_AGE: MetricSpec(
        "histogram",
        "s",
        "Seconds a queue message waited from insertion to its processing (each delivery).",
        frozenset({"queue"}),
    ),
}

MetricAttribute = str | int | float | bool


class Sink(Protocol):
    """Where measurements go once telemetry is configured (gatekeeper.otel.OtelSink: OpenTelemetry meters)."""

    def measure(self, metric: Metric, value: float, attributes: Mapping[str, MetricAttribute]) -> None: ...


_lock = threading.RLock()
_factory: Callable[[], Sink | None] | None = None
_sink: Sink | None = None
_configuring = False


def enable(factory: Callable[[], Sink | None]) -> None:
    """Configure telemetry on the first event or measurement with `factory` (imports stay out of cold
    start). The factory returns None when there is nothing to export to; it runs at most once."""
    global _factory, _sink
    with _lock:
        _factory, _sink = factory, None


def use(sink: Sink | None) -> None:
    """Send measurements to `sink` from now on (tests; None: nowhere)."""
    global _factory, _sink
    with _lock:
        _factory, _sink = None, sink


def active_sink() -> Sink | None:
    """The configured sink, configuring it first if `enable` left a factory. Other threads wait for the
    configuration instead of skipping the exporter; an event the factory itself causes is only logged. A
    factory that fails leaves telemetry unconfigured (logged once): telemetry never fails the caller."""
    global _factory, _sink, _configuring
    if _factory is None:
        return _sink
    with _lock:
        if _factory is None or _configuring:
            return _sink
        _configuring = True
        try:
            _sink = _factory()
        except Exception as exc:
            setup_log.warning("telemetry: exporter not configured: %s", type(exc).__name__)
            _sink = None
        finally:
            _factory, _configuring = None, False
        return _sink


# ----- events -------------------------------------------------------------------------------------------


def emit(name: str, **fields: Scalar) -> dict[str, Scalar]:
    """Log one telemetry event (a custom event once configured), feed the metrics it counts, and return what
    was logged. Raises ValueError (unknown event, missing or unknown field, non-finite number) or TypeError (a
    value that is not a JSON scalar), naming the field."""
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
        payload[key] = _scalar(event.value, key, fields[key])
    sink = active_sink()  # before the record: configuring attaches the exporter's handler to this logger
    log.info(
        "%s%s",
        PREFIX,
        json.dumps(payload, separators=(",", ":"), allow_nan=False),
        extra=custom_event_attributes(event, payload),
    )
    if sink is not None:
        for metric, spec in METRICS.items():
            if spec.event is event:
                value = payload.get(spec.value) if spec.value else 1
                if isinstance(value, int | float) and not isinstance(value, bool):
                    _send(sink, metric, float(value), {k: payload[k] for k in spec.attributes})
    return payload


def custom_event_attributes(event: Event, payload: Mapping[str, Scalar]) -> dict[str, Any]:
    """The record's attributes for Azure Monitor: the event name, each non-null field (customDimensions) and
    the numeric fields again as customMeasurements (typed numbers for the workbook's percentiles)."""
    attributes: dict[str, Any] = {CUSTOM_EVENT_NAME: event.value}
    numbers: dict[str, float] = {}
    for key, value in payload.items():
        if key == "name" or value is None:
            continue
        attributes[key] = value
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers[key] = value
    if numbers:
        attributes[CUSTOM_MEASUREMENTS] = json.dumps(numbers, separators=(",", ":"), allow_nan=False)
    return attributes


def measure(metric: Metric | str, value: float, **attributes: Scalar) -> None:
    """Record one measurement of a metric that no event feeds (queue age). Validated like `emit`: the metric
    must be declared, its attributes exactly the declared ones, scalars only, the value a finite number >= 0.
    Nothing is recorded (or imported) while telemetry is not configured."""
    try:
        known = Metric(metric)
    except ValueError:
        raise ValueError(f"telemetry: unknown metric {metric!r}") from None
    spec = METRICS[known]
    missing, unknown = spec.attributes - attributes.keys(), attributes.keys() - spec.attributes
    if missing or unknown:
        raise ValueError(
            f"telemetry: {known.value}: attributes must be {', '.join(sorted(spec.attributes))}, "
            f"not {', '.join(sorted(attributes)) or 'none'}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"telemetry: {known.value}: the value must be a finite number >= 0, not {value!r}")
    checked = {key: _scalar(known.value, key, attributes[key]) for key in sorted(attributes)}
    sink = active_sink()
    if sink is not None:
        _send(sink, known, float(value), checked)


def _send(sink: Sink, metric: Metric, value: float, attributes: Mapping[str, Scalar]) -> None:
    present = {key: item for key, item in attributes.items() if item is not None}
    try:
        sink.measure(metric, value, present)
    except Exception as exc:  # a metric never fails the gate
        setup_log.warning("telemetry: %s not recorded: %s", metric.value, type(exc).__name__)


def _scalar(owner: str, key: str, value: Any) -> Scalar:
    if not FIELD_NAME.match(key) or any(word in key for word in FORBIDDEN_WORDS):
        raise ValueError(f"telemetry: {owner}: field name {key!r} is not allowed")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"telemetry: {owner}: field {key!r} must be a finite number")
        return value
    if isinstance(value, str):  # a StrEnum is a str: its value is logged
        return str(value)[:MAX_STRING]
    raise TypeError(f"telemetry: {owner}: field {key!r} must be a JSON scalar, not {type(value).__name__}")


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
