"""The workbook queries exactly what the product emits: every custom event and field (customEvents) and every
metric and attribute (customMetrics) its KQL reads is declared in `gatekeeper.telemetry`, every call site emits
a declared event with its declared fields, every event the code emits is charted by the workbook or documented
in docs/telemetry.md, and the panels the service owner expects are there, tenant-filtered where a tenant is
known. The workbook opens on the deployment's Application Insights component (fallbackResourceIds, from Bicep)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import telemetry
from tests.infra import kql_telemetry

ROOT = Path(__file__).resolve().parents[2]
WORKBOOK = ROOT / "infra" / "workbook.json"
MONITORING = ROOT / "infra" / "modules" / "monitoring.bicep"
DOC = ROOT / "docs" / "telemetry.md"
SOURCES = ("gatekeeper", "functions", "orchestrators")
TENANT_FILTER = "'{Tenant}' == 'All' or tostring(customDimensions.tenant) == '{Tenant}'"


def queries() -> list[tuple[str, str]]:
    """(item name, KQL) for every query in the workbook, parameters included."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, name: str) -> None:
        if isinstance(node, dict):
            name = str(node.get("name", name))
            if isinstance(node.get("query"), str):
                found.append((name, node["query"]))
            for value in node.values():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(json.loads(WORKBOOK.read_text(encoding="utf-8")), "workbook")
    return found


def emit_calls() -> list[tuple[str, str, set[str]]]:
    """(file:line, event name, keyword names) of every `telemetry.emit(...)` / `emit(...)` in the product."""
    calls = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
                if called != "emit" or owner not in (None, "telemetry") or path.name == "telemetry.py":
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert node.args, f"{where}: emit needs the event as its first argument"
                first = node.args[0]
                if isinstance(first, ast.Attribute):  # telemetry.Event.GATE_DECISION / Event.GATE_DECISION
                    name = telemetry.Event[first.attr].value
                elif isinstance(first, ast.Constant) and isinstance(first.value, str):
                    name = first.value
                else:
                    raise AssertionError(f"{where}: emit's event must be an Event member or a literal")
                calls.append((where, name, {k.arg for k in node.keywords if k.arg is not None}))
    return calls


def test_the_workbook_reads_custom_events_and_metrics_not_trace_lines():
    found = queries()
    assert len(found) >= 14, "the parameter and the charts all read telemetry"
    tables = {("customEvents" in q, "customMetrics" in q) for _, q in found}
    assert (True, False) in tables and (False, True) in tables, "both tables are read"
    text = WORKBOOK.read_text(encoding="utf-8")
    assert "GATEKEEPER_EVENT" not in text and "traces" not in text


def test_every_query_reads_only_declared_events_metrics_and_fields():
    found = [problem for name, query in queries() for problem in kql_telemetry.problems(name, query)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "query",
    [
        'customEvents | where name == "GateDecision" | extend x = customDimensions.latency_seconds',
        'customEvents | where name in ("GateOutcome", "Nope") | project customDimensions.status',
        'customEvents | where name == "ApprovalDecided" | extend m = todouble(customMeasurements.latency)',
        'customMetrics | where name == "gatekeeper.queue.age" | extend t = tostring(customDimensions.tenant)',
        'customMetrics | where name == "gatekeeper.gates_total"',
        'traces | where message startswith "GATEKEEPER_EVENT "',
    ],
)
def test_the_checker_can_fail(query: str):
    assert kql_telemetry.problems("planted", query), query


def test_tenant_scoped_panels_filter_by_tenant_and_every_chart_follows_the_time_range():
    workbook = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    parameters = {p["name"]: p for p in workbook["items"][1]["content"]["parameters"]}
    assert parameters["TimeRange"]["type"] == 4 and parameters["Tenant"]["type"] == 2
    for item in workbook["items"]:
        if item["type"] != 3:
            continue
        content, name = item["content"], item["name"]
        assert content["timeContextFromParameter"] == "TimeRange", name
        query = content["query"]
        tenant_events = [n for n in kql_telemetry.names(query) if n in telemetry.EVENT_NAMES]
        scoped = any("tenant" in telemetry.FIELDS[telemetry.Event(n)] for n in tenant_events)
        if scoped:
            assert TENANT_FILTER in query, f"{name}: tenant-scoped events without the tenant filter"


def test_the_panels_a_service_owner_expects_use_the_facts_they_are_about():
    by_item = dict(queries())
    expect = {
        "throughput": {"GateDecision"},
        "outcomes": {"GateOutcome"},
        "errors": {"IngestRejected"},
        "latency": {"ApprovalDecided"},
        "overridesByRule": {"GateDecision", "HitlOverride", "GateOutcome"},
        "overrideRate": {"HitlOverride", "GateOutcome", "ApprovalDecided"},
        "callbacks": {"CallbackFailed"},
        "deadLetters": {"gatekeeper.dead_letters"},
        "queueAge": {"gatekeeper.queue.age"},
        "deploymentFrequency": {"WatchOutcome"},
        "dora": {"GateDecision", "WatchOutcome"},
        "aiAgents": {"ActionRequested", "ActionResolved", "GateOutcome"},
        "aiAgentTools": {"McpToolCalled"},
    }
    for item, names in expect.items():
        assert kql_telemetry.names(by_item[item]) == names, item
    for percentile in ("percentile(latencyMinutes, 50)", "percentile(latencyMinutes, 95)"):
        assert percentile in by_item["latency"], percentile
    assert "by stage" in by_item["latency"] and "customMeasurements.latency_seconds" in by_item["latency"]
    assert "by rule" in by_item["overridesByRule"] and "level = tostring(customDimensions.level)" in by_item["outcomes"]
    assert "requests" in by_item["errors"] and "success == false" in by_item["errors"]
    dora = by_item["dora"]
    for column in ("deploymentsPerDay", "leadTimeHoursP50", "changeFailurePercent", "timeToRestoreHoursP50"):
        assert column in dora, column
    assert "customDimensions.gate_id" in dora and "customMeasurements.time_to_restore_seconds" in dora
    # Lead time runs from the commit the gate recorded, not from the gate request (issue 16's DORA panel).
    assert "commitAt = todatetime(tostring(customDimensions.commit_time))" in dora
    assert "leadHours = iff(isnull(committedAt)" in dora and "(deployedAt - committedAt) / 1h)" in dora
    for column in ("withoutCommitTime", "requestToDeployHoursP50"):
        assert column in dora.rsplit("| project", 1)[1], column
    agents = by_item["aiAgents"]
    assert "by agent, tool" in agents and "customDimensions.refused" in agents and "customDimensions.via" in agents
    for column in ("approved", "denied", "expiredOrCancelled", "pending", "executedAfterApproval", "executedRefused"):
        assert f"{column} = sum" in agents, column
    assert "by agent = " in by_item["aiAgentTools"] and "customDimensions.tool" in by_item["aiAgentTools"]


def test_bicep_sets_the_fallback_resource_to_the_component():
    assert json.loads(WORKBOOK.read_text(encoding="utf-8"))["fallbackResourceIds"] == []
    bicep = MONITORING.read_text(encoding="utf-8")
    assert (
        "serializedData: string(union(loadJsonContent('../workbook.json'), "
        "{ fallbackResourceIds: [ appInsights.id ] }))" in bicep
    )


def test_every_call_site_emits_a_declared_event_with_exactly_its_fields():
    calls = emit_calls()
    assert calls, "the product emits telemetry"
    for where, name, keywords in calls:
        assert name in telemetry.EVENT_NAMES, f"{where}: unknown event {name!r}"
        assert keywords == set(telemetry.FIELDS[telemetry.Event(name)]), f"{where}: fields differ from FIELDS"


@pytest.mark.parametrize("event", sorted(telemetry.EVENT_NAMES))
def test_every_event_is_emitted_and_charted_or_documented(event: str):
    emitted = {name for _, name, _ in emit_calls()}
    assert event in emitted, f"{event} is declared but nothing emits it"
    charted = any(event in kql_telemetry.names(q) for _, q in queries())
    documented = f"`{event}`" in DOC.read_text(encoding="utf-8")
    assert charted or documented, f"{event} is neither in the workbook nor in docs/telemetry.md"
    assert documented, f"docs/telemetry.md does not describe {event}"


@pytest.mark.parametrize("metric", sorted(m.value for m in telemetry.Metric))
def test_every_metric_is_documented(metric: str):
    assert f"`{metric}`" in DOC.read_text(encoding="utf-8"), f"docs/telemetry.md does not describe {metric}"
