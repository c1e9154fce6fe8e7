"""Telemetry through the OpenTelemetry SDK: the custom events and their dimensions, the metric instruments and
their attributes, with the SDK's in-memory log exporter and metric reader behind the production sink
(`gatekeeper.otel.OtelSink`); what Azure Monitor's exporter makes of an event (customEvents); refusals; and an
unconfigured process that emits nothing and imports no OpenTelemetry (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pydantic import SecretStr

from gatekeeper import telemetry
from gatekeeper.otel import OtelSink
from gatekeeper.telemetry import CUSTOM_EVENT_NAME, CUSTOM_MEASUREMENTS, METRICS, Event, Metric

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pipeline:
    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for readable in self.logs.get_finished_logs():
            attributes = dict(readable.log_record.attributes or {})
            if name is None or attributes.get(CUSTOM_EVENT_NAME) == name:
                found.append(attributes)
        return found

    def points(self, metric: Metric) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every point of `metric` collected so far."""
        data = self.metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric.value:
                        found += [(dict(p.attributes or {}), p) for p in item.data.data_points]
        return found


@pytest.fixture
def otel() -> Iterator[Pipeline]:
    """The production sink over the SDK's in-memory exporter and reader; the telemetry logger restored after."""
    logger = logging.getLogger(telemetry.LOGGER_NAME)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    exporter, reader = InMemoryLogRecordExporter(), InMemoryMetricReader()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    telemetry.use(OtelSink(MeterProvider(metric_readers=[reader]), logger_provider))
    try:
        yield Pipeline(exporter, reader)
    finally:
        telemetry.use(None)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def decision(**overrides: Any) -> dict[str, Any]:
    return {
        "tenant": "contoso",
        "instance_id": "gate-1",
        "level": "L2",
        "rule": "prod-deploy",
        "source": "github",
        "environment": "production",
        "action": "deploy",
        "blocked": False,
        "quality": "warning",
        "quality_score": 87.5,
        "approval_stages": 1,
        "commit_time": None,
        "commit_age_seconds": None,
        **overrides,
    }


def decided(**overrides: Any) -> dict[str, Any]:
    return {
        "tenant": "contoso",
        "instance_id": "gate-1",
        "level": "L2",
        "outcome": "approved",
        "decided_by": "approvers",
        "stage": 1,
        "votes": 2,
        "escalations": 1,
        "latency_seconds": 1800.0,
        "quality": "pass",
        **overrides,
    }


# ----- custom events ----------------------------------------------------------------------------------


def test_an_event_is_one_custom_event_record_with_typed_dimensions_and_measurements(otel: Pipeline):
    returned = telemetry.emit(Event.GATE_DECISION, **decision(rule=None))
    (attributes,) = otel.events()
    assert attributes[CUSTOM_EVENT_NAME] == "GateDecision"
    for field in ("tenant", "instance_id", "level", "source", "environment", "action", "quality"):
        assert attributes[field] == returned[field]
    assert attributes["blocked"] is False and attributes["approval_stages"] == 1  # typed, not strings
    assert attributes["quality_score"] == 87.5
    assert "rule" not in attributes, "unknown values are left out, not sent as 'None'"
    assert json.loads(attributes[CUSTOM_MEASUREMENTS]) == {"approval_stages": 1, "quality_score": 87.5}
    (readable,) = otel.logs.get_finished_logs()
    assert readable.log_record.body == telemetry.PREFIX + json.dumps(returned, separators=(",", ":"))
    assert set(attributes) <= {CUSTOM_EVENT_NAME, CUSTOM_MEASUREMENTS} | telemetry.FIELDS[Event.GATE_DECISION]


def test_azure_monitor_sends_the_record_as_a_custom_event_with_dimensions_and_measurements(otel: Pipeline):
    """What reaches customEvents: Azure Monitor's exporter (the pinned version) turns the record into
    EventData named after the event, fields in properties (customDimensions), numbers in measurements."""
    from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope

    telemetry.emit(Event.APPROVAL_DECIDED, **decided())
    (readable,) = otel.logs.get_finished_logs()
    envelope = _convert_log_to_envelope(readable)
    assert envelope.name == "Microsoft.ApplicationInsights.Event"
    assert envelope.data.base_type == "EventData"
    data = envelope.data.base_data
    assert data.name == "ApprovalDecided"
    assert data.properties["tenant"] == "contoso" and data.properties["decided_by"] == "approvers"
    assert data.properties["stage"] == "1" and data.properties["latency_seconds"] == "1800.0"
    assert data.measurements == {"stage": 1.0, "votes": 2.0, "escalations": 1.0, "latency_seconds": 1800.0}
    assert CUSTOM_EVENT_NAME not in data.properties and CUSTOM_MEASUREMENTS not in data.properties


def test_every_declared_event_reaches_the_exporter_with_exactly_its_fields(otel: Pipeline):
    for event, fields in telemetry.FIELDS.items():
        values: dict[str, Any] = {field: f"v-{field}" for field in fields}
        telemetry.emit(event, **values)
        (attributes,) = otel.events(event.value)
        assert {k: v for k, v in attributes.items() if k != CUSTOM_EVENT_NAME} == values, event


def test_no_field_clashes_with_a_log_record_attribute():
    """Fields travel as `extra=` on the log record: a field named like a LogRecord attribute would raise."""
    for event, fields in telemetry.FIELDS.items():
        assert not fields & telemetry.RESERVED_RECORD_ATTRIBUTES, event


@pytest.mark.parametrize("value", [SecretStr("s3cr3t"), {"nested": 1}, ["a"], b"raw"])
def test_secrets_and_objects_are_refused_before_anything_is_exported(otel: Pipeline, value: Any):
    with pytest.raises(TypeError, match="'rule'"):
        telemetry.emit(Event.GATE_DECISION, **decision(rule=value))
    assert otel.events() == [] and otel.points(Metric.GATES) == []


def test_free_text_and_secret_like_fields_are_refused(otel: Pipeline):
    with pytest.raises(ValueError, match="unknown field"):
        telemetry.emit(Event.GATE_DECISION, **decision(comment="please approve, the token is abc"))
    with pytest.raises(ValueError, match="attributes must be queue, not auth_token, queue"):
        telemetry.measure(Metric.QUEUE_AGE, 1.0, queue="pipeline-events", **{"auth_token": "x"})
    assert otel.events() == [] and otel.points(Metric.QUEUE_AGE) == []
    for spec in METRICS.values():  # the declared attributes pass the same name rule as event fields
        for name in spec.attributes:
            assert telemetry.FIELD_NAME.match(name) and not any(w in name for w in telemetry.FORBIDDEN_WORDS)


# ----- metrics ----------------------------------------------------------------------------------------


def test_gates_are_counted_per_tenant_level_source_and_rule(otel: Pipeline):
    telemetry.emit(Event.GATE_DECISION, **decision())
    telemetry.emit(Event.GATE_DECISION, **decision(instance_id="gate-2"))
    telemetry.emit(Event.GATE_DECISION, **decision(instance_id="gate-3", level="L0", rule=None))
    points = {tuple(sorted(a.items())): p.value for a, p in otel.points(Metric.GATES)}
    assert points == {
        (("level", "L2"), ("rule", "prod-deploy"), ("source", "github"), ("tenant", "contoso")): 2,
        (("level", "L0"), ("source", "github"), ("tenant", "contoso")): 1,
    }


def test_approval_latency_is_a_histogram_by_stage_and_outcome(otel: Pipeline):
    telemetry.emit(Event.APPROVAL_DECIDED, **decided(latency_seconds=600.0, stage=0))
    telemetry.emit(Event.APPROVAL_DECIDED, **decided(instance_id="g2", latency_seconds=1800.0, stage=0))
    telemetry.emit(Event.APPROVAL_DECIDED, **decided(instance_id="g3", latency_seconds=None, stage=1))
    ((attributes, point),) = otel.points(Metric.APPROVAL_LATENCY)  # no latency, no measurement
    expected = {"tenant": "contoso", "level": "L2", "stage": 0, "outcome": "approved", "decided_by": "approvers"}
    assert attributes == expected
    assert (point.count, point.sum, point.min, point.max) == (2, 2400.0, 600.0, 1800.0)
    instrument = _instrument(otel, Metric.APPROVAL_LATENCY)
    assert instrument.unit == "s"


def test_callback_failures_and_dead_letters_are_counted(otel: Pipeline):
    base = {"tenant": "contoso", "instance_id": "g", "status_code": 502}
    telemetry.emit(Event.CALLBACK_FAILED, **base, target="github", final=False)
    telemetry.emit(Event.CALLBACK_FAILED, **base, target=None, final=True)
    telemetry.emit(Event.DEAD_LETTERED, queue="pipeline-events", cause="poison", dequeue_count=5)
    callbacks = sorted((sorted(a.items()), p.value) for a, p in otel.points(Metric.CALLBACK_FAILURES))
    assert callbacks == [
        ([("final", False), ("target", "github"), ("tenant", "contoso")], 1),
        ([("final", True), ("tenant", "contoso")], 1),
    ]
    ((attributes, point),) = otel.points(Metric.DEAD_LETTERS)
    assert attributes == {"queue": "pipeline-events", "cause": "poison"} and point.value == 1


def test_queue_age_is_measured_from_the_message_insertion_time(otel: Pipeline):
    from functions.queues import queue_age

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

    class Message:
        insertion_time = now - timedelta(seconds=42)

    queue_age("pipeline-events", Message(), now)  # type: ignore[arg-type]
    ((attributes, point),) = otel.points(Metric.QUEUE_AGE)
    assert attributes == {"queue": "pipeline-events"} and (point.count, point.sum) == (1, 42.0)


def test_a_naive_insertion_time_is_read_as_utc(otel: Pipeline):
    from functions.queues import queue_age

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

    class Message:
        insertion_time = datetime(2026, 12, 5, 11, 59, 18)  # no zone: the SDK's UTC

    queue_age("connector-events", Message(), now)  # type: ignore[arg-type]
    ((attributes, point),) = otel.points(Metric.QUEUE_AGE)
    assert attributes == {"queue": "connector-events"} and (point.count, point.sum) == (1, 42.0)


@pytest.mark.parametrize(
    ("value", "attributes", "message"),
    [
        (-1.0, {"queue": "q"}, "finite number >= 0"),
        (float("nan"), {"queue": "q"}, "finite number >= 0"),
        (True, {"queue": "q"}, "finite number >= 0"),
        (1.0, {}, "attributes must be queue"),
        (1.0, {"queue": "q", "tenant": "t"}, "attributes must be queue"),
    ],
)
def test_measure_refuses_bad_values_and_undeclared_attributes(
    otel: Pipeline, value: Any, attributes: dict[str, Any], message: str
):
    with pytest.raises(ValueError, match=message):
        telemetry.measure(Metric.QUEUE_AGE, value, **attributes)
    with pytest.raises(ValueError, match="unknown metric"):
        telemetry.measure("gatekeeper.secrets", 1.0)
    assert otel.points(Metric.QUEUE_AGE) == []


def test_every_instrument_is_declared_with_its_kind_unit_and_event_fields():
    for metric, spec in METRICS.items():
        assert metric.value.startswith("gatekeeper."), metric
        if spec.event is not None:
            assert spec.attributes <= telemetry.FIELDS[spec.event], metric
            if spec.kind == "histogram":
                assert spec.value in telemetry.FIELDS[spec.event], metric
        else:
            assert spec.kind == "histogram" and spec.value is None, metric
    instruments = {m.value for m in Metric}
    assert instruments == {
        "gatekeeper.gates",
        "gatekeeper.approval.latency",
        "gatekeeper.callback.failures",
        "gatekeeper.dead_letters",
        "gatekeeper.queue.age",
    }


def _instrument(otel: Pipeline, metric: Metric) -> Any:
    data = otel.metrics.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "gatekeeper"
            for item in scope.metrics:
                if item.name == metric.value:
                    return item
    raise AssertionError(f"{metric} not collected")


# ----- configuration ----------------------------------------------------------------------------------


def test_a_failing_exporter_factory_leaves_telemetry_off_and_the_caller_unharmed(caplog: pytest.LogCaptureFixture):
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("no route to the ingestion endpoint")

    telemetry.enable(broken)
    try:
        telemetry.emit(Event.GATE_DECISION, **decision())
        telemetry.measure(Metric.QUEUE_AGE, 1.0, queue="q")
        assert calls == [1], "the factory runs once, on the first use"
        assert telemetry.active_sink() is None
        assert any("exporter not configured: RuntimeError" in r.getMessage() for r in caplog.records)
    finally:
        telemetry.use(None)


def test_the_composition_root_configures_nothing_without_a_connection_string():
    from gatekeeper.services import azure_monitor
    from gatekeeper.settings import Settings

    assert azure_monitor(Settings.from_environ({})) is None
    assert azure_monitor(Settings.from_environ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "})) is None


# azure.durable_functions itself loads the OpenTelemetry trace API; what configuring telemetry adds is these.
HEAVY = (
    "opentelemetry.sdk",
    "opentelemetry.metrics",
    "opentelemetry._logs",
    "opentelemetry.instrumentation",
    "azure.monitor.opentelemetry",
    "gatekeeper.otel",
    "psutil",
)
UNCONFIGURED = f"HEAVY = {HEAVY!r}\n" + textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    import function_app  # registers the exporter factory, as the host does
    from functions.queues import queue_age
    from gatekeeper import telemetry
    telemetry.emit("CallbackFailed", tenant="t", instance_id="g", target=None, status_code=None, final=True)
    telemetry.measure("gatekeeper.queue.age", 3.0, queue="pipeline-events")
    heavy = sorted(m for m in sys.modules if m.startswith(HEAVY))
    print(json.dumps({"heavy": heavy, "sink": repr(telemetry.active_sink())}))
    """
)


def test_unconfigured_the_process_emits_only_the_local_line_and_imports_no_opentelemetry():
    environment = {k: v for k, v in __import__("os").environ.items() if not k.startswith("APPLICATIONINSIGHTS")}
    result = subprocess.run(
        [sys.executable, "-c", UNCONFIGURED], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "sink": "None"}
    assert 'GATEKEEPER_EVENT {"name":"CallbackFailed"' in result.stderr, "the local line is still logged"


def test_the_unconfigured_check_would_see_an_opentelemetry_import():
    """The subprocess check can fail: a process that configures a sink has OpenTelemetry in sys.modules."""
    script = UNCONFIGURED.replace(
        "import function_app  # registers the exporter factory, as the host does",
        "import function_app\nfrom opentelemetry.sdk.metrics import MeterProvider\n"
        "from gatekeeper.otel import OtelSink\nfrom gatekeeper import telemetry as t\nt.use(OtelSink(MeterProvider()))",
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "gatekeeper.otel" in report["heavy"] and any(m.startswith("opentelemetry.sdk") for m in report["heavy"])


def test_events_during_configuration_wait_for_it_and_an_event_from_the_factory_is_only_logged():
    import threading

    started, release = threading.Event(), threading.Event()
    sinks: list[Any] = []

    class Recorder:
        def measure(self, metric: Metric, value: float, attributes: Any) -> None:
            sinks.append((metric, value))

    def slow_factory() -> Recorder:
        started.set()
        telemetry.emit(Event.DEAD_LETTERED, queue="q", cause="poison", dequeue_count=1)  # re-entrant: no deadlock
        assert release.wait(10)
        return Recorder()

    telemetry.enable(slow_factory)
    try:
        first = threading.Thread(target=telemetry.measure, args=(Metric.QUEUE_AGE, 1.0), kwargs={"queue": "a"})
        first.start()
        assert started.wait(10)
        second = threading.Thread(target=telemetry.measure, args=(Metric.QUEUE_AGE, 2.0), kwargs={"queue": "b"})
        second.start()
        release.set()
        first.join(10)
        second.join(10)
        assert sorted(value for _, value in sinks) == [1.0, 2.0], "neither measurement skipped the exporter"
    finally:
        telemetry.use(None)
